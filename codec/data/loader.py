"""DataLoaders over a SegmentDataset: endless step-addressed training batches, validation clips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .dataset import SegmentDataset
from .sampler import StepBatchSampler


def collate(items: list[torch.Tensor]) -> torch.Tensor:
    """[1, T_i] items -> [B, 1, max T_i], zero-padded at the end (equal lengths are just stacked)."""
    length = max(x.shape[-1] for x in items)
    return torch.stack([F.pad(x, (0, length - x.shape[-1])) for x in items])


def build_train_loader(dataset: SegmentDataset, global_batch_size: int, seed: int, rank: int = 0,
                       world_size: int = 1, start_step: int = 0, num_workers: int = 0,
                       collate_fn: Callable[[list[Any]], Any] | None = None) -> DataLoader:
    """An endless loader of this rank's batches [global_batch_size // world_size, 1, T] for
    steps start_step, start_step + 1, ... (see StepBatchSampler); resume with start_step = the
    next step to train. Workers are persistent, so a cached dataset stays cached."""
    sampler = StepBatchSampler(len(dataset), global_batch_size, seed, rank, world_size, start_step)
    # the loader's own generator: creating it must not draw from the global RNG that training resumes
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn or collate,
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed))


def build_valid_batches(dataset: SegmentDataset) -> Iterator[torch.Tensor]:
    """Every validation clip as its own batch [1, 1, T_i] (at most valid_seconds long), in
    dataset order, each read when it is reached: no padding, so metrics see only real audio."""
    return (dataset[i].unsqueeze(0) for i in range(len(dataset)))
