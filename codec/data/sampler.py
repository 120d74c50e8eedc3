"""StepBatchSampler: deterministic, resumable, distributed batches addressed by training step.

The global batch of step k depends only on (seed, k, num_items, global_batch_size):

    order(e)    = randperm(num_items) seeded by (seed, e)     # one epoch's item order
    epoch       = k // steps_per_epoch,   steps_per_epoch = num_items // global_batch_size
    batch(k)    = order(epoch)[j * B : (j + 1) * B],   j = k % steps_per_epoch
    seed(k, i)  = hash(seed, k, i)                             # crop/gain seed of position i

so resuming at step k needs only ``start_step=k``, and rank r of W takes positions
[r * B / W, (r + 1) * B / W) of the same global batch: the ranks' batches, concatenated in
rank order, are exactly the single-process batch. Each epoch visits every item at most once
(the num_items % B items left over at its end wait for a later epoch's shuffle). When B
exceeds num_items, an epoch's order is several independent permutations back to back, so
items repeat within the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for step = start_step, start_step + 1, ... (forever), this rank's list of
    ``(item_index, sample_seed)`` pairs of length global_batch_size // world_size."""

    def __init__(self, num_items: int, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        if global_batch_size % world_size:
            raise ValueError(f"global_batch_size ({global_batch_size}) must be divisible by the number of "
                             f"processes ({world_size}) so that every rank gets the same batch size")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.num_items = num_items
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.local_batch_size = global_batch_size // world_size
        self.repeats = -(-global_batch_size // num_items)  # permutations per epoch: 1 unless B > N
        self.steps_per_epoch = self.repeats * num_items // global_batch_size
        self._order: tuple[int, torch.Tensor] | None = None  # (epoch, its item order), the last one used

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """[repeats * num_items] int64: the item order of ``epoch``."""
        if self._order is None or self._order[0] != epoch:
            perms = [torch.randperm(self.num_items, generator=torch.Generator().manual_seed(
                _mix("order", self.seed, epoch, r))) for r in range(self.repeats)]
            self._order = (epoch, torch.cat(perms))
        return self._order[1]

    def global_batch(self, step: int) -> list[tuple[int, int]]:
        """All ranks' (item_index, sample_seed) pairs of ``step``, in rank order."""
        return self._positions(step, 0, self.global_batch_size)

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's (item_index, sample_seed) pairs of ``step``."""
        start = self.rank * self.local_batch_size
        return self._positions(step, start, start + self.local_batch_size)

    def _positions(self, step: int, start: int, stop: int) -> list[tuple[int, int]]:
        epoch, j = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        base = j * self.global_batch_size
        items = order[base + start:base + stop].tolist()
        return [(item, _mix("sample", self.seed, step, i)) for i, item in enumerate(items, start)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def _mix(*parts: object) -> int:
    """A well-spread 63-bit integer from the parts (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
