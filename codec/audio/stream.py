"""Block plumbing for coding files that are never held whole (see compress.py).

Audio arrives as blocks of any length; the model wants fixed pieces. ``rechunk`` cuts a
stream of blocks [..., n] into pieces of exactly ``size`` samples (the last one shorter),
``SegmentWindow`` cuts it into the overlapping segments of a ``SegmentGrid`` as soon as each
is complete, and ``blend_segments`` is the streaming inverse: decoded segments in, the
cross-faded audio out as soon as no later segment overlaps it. Each gives exactly (bitwise)
what slicing or the whole-signal reference (tests/segment_reference.py) gives, whatever the blocks::

    stream:   |--b0--|---b1---|-b2-|------b3------|...
    segments: [0, segment)  [stride, stride + segment)  [2 stride, ...)  ...
    blended:  [0, stride) as soon as segment 0 is added, [stride, 2 stride) after segment 1, ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .model import AudioCodec
from .segments import SegmentGrid


def rechunk(blocks: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Blocks [..., n] -> pieces [..., size] in order, then the shorter rest (if any)."""
    pending: list[torch.Tensor] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += block.shape[-1]
        if held < size:
            continue
        joined = torch.cat(pending, dim=-1) if len(pending) > 1 else pending[0]
        whole = held // size * size
        for start in range(0, whole, size):
            yield joined[..., start : start + size]
        pending, held = [joined[..., whole:]], held - whole
    if held:
        yield torch.cat(pending, dim=-1)


class SegmentWindow:
    """Cuts a stream [..., n] into the segments of the grid ``(segment, stride, length)``,
    the length being known only at the end: ``push`` returns the segments each block
    completes, ``finish`` the last ones, shorter, as ``SegmentGrid.spans`` gives them."""

    def __init__(self, segment: int, stride: int) -> None:
        self.segment, self.stride = segment, stride
        self.num_samples = 0  # pushed so far
        self._buffer: torch.Tensor | None = None  # samples from ``_next`` on
        self._next = 0  # start of the next segment

    def push(self, block: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(start, samples [..., segment]) of every segment complete after ``block``."""
        self.num_samples += block.shape[-1]
        buffer = block if self._buffer is None else torch.cat([self._buffer, block], dim=-1)
        out, offset = [], 0  # offset: position of ``_next`` in ``buffer``
        while offset + self.segment <= buffer.shape[-1]:
            out.append((self._next, buffer[..., offset : offset + self.segment]))
            self._next, offset = self._next + self.stride, offset + self.stride
        self._buffer = buffer[..., offset:]  # offset <= length, as stride <= segment
        return out

    def finish(self) -> list[tuple[int, torch.Tensor]]:
        """The segments not yet returned: every grid start below the length, each cut at the end."""
        if self._buffer is None:
            raise ValueError("finish() before any block was pushed")
        out = []
        for start, length in self.grid.spans():
            if start >= self._next:
                offset = start - self._next
                out.append((start, self._buffer[..., offset : offset + length]))
        return out

    @property
    def grid(self) -> SegmentGrid:
        return SegmentGrid(self.segment, self.stride, self.num_samples)


def blend_segments(model: AudioCodec, codes: torch.Tensor, grid: SegmentGrid,
                   scales: torch.Tensor | None) -> Iterator[torch.Tensor]:
    """(codes [S, Q, F], scales [S, N] or None) -> audio [S, C, n] blocks whose concatenation
    is the reference decoder bitwise: the same products and sums, in the same order, each
    output sample emitted once no later segment covers it."""
    spans, frames = grid.spans(), grid.frames(model.hop_length)
    if len(spans) == 1:
        audio = model.decode(codes, grid.num_samples)
        yield audio if scales is None else audio * scales[:, 0, None, None]
        return
    t = torch.linspace(0, 1, grid.segment + 2, dtype=torch.float32, device=codes.device)[1:-1]
    weight = 0.5 - (t - 0.5).abs()  # [segment], a triangle, positive everywhere
    # out, total: the sums over [start, start + segment) of the current segment
    out = torch.zeros(codes.shape[0], model.channels, grid.segment, device=codes.device)
    total = torch.zeros(grid.segment, device=codes.device)
    first = 0
    for i, ((start, length), f) in enumerate(zip(spans, frames)):
        audio = model.decode(codes[..., first : first + f], length).float()
        if scales is not None:
            audio = audio * scales[:, i, None, None]
        out[..., :length] += weight[:length] * audio
        total[:length] += weight[:length]
        first += f
        done = spans[i + 1][0] - start if i + 1 < len(spans) else grid.num_samples - start
        yield out[..., :done] / total[:done]
        out = torch.cat([out[..., done:], out.new_zeros(*out.shape[:-1], done)], dim=-1)
        total = torch.cat([total[done:], total.new_zeros(done)])
