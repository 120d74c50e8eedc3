"""Segmented coding for non-causal models: bounded memory for any length (EnCodec 48 kHz style).

A non-causal model sees its whole input, so a long file is cut on a fixed grid into segments
of ``segment`` samples starting every ``stride`` samples (stride < segment: neighbours
overlap). Each segment is coded on its own, optionally divided by its RMS first (the scale
travels with its codes), and the decoded segments are joined by a linear cross-fade over the
overlaps. Memory is bounded by the segment length, and the grid depends only on
(segment, stride, length), never on how the audio was read or batched::

    offsets 0, stride, 2 stride, ... < T;  segment i covers [i stride, min(i stride + segment, T))
    decoded = sum_i w_i * segment_i / sum_i w_i,   w = triangle over the segment, > 0 everywhere
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the grid alone needs no torch (a .cdc header holds one)
    import torch

    from .model import AudioCodec

NORMALIZE_EPS = 1e-8  # added to each segment's RMS (EnCodec's value)


@dataclass(frozen=True)
class SegmentGrid:
    segment: int  # samples per segment at the model rate
    stride: int  # samples between segment starts (<= segment)
    num_samples: int  # input length at the model rate

    def spans(self) -> list[tuple[int, int]]:
        """(start, length) of every segment; one segment for an input no longer than ``segment``."""
        starts = range(0, max(self.num_samples, 1), self.stride)
        return [(s, min(self.segment, self.num_samples - s)) for s in starts]

    @property
    def num_segments(self) -> int:
        return len(range(0, max(self.num_samples, 1), self.stride))

    def frames(self, hop_length: int) -> list[int]:
        """Frames coded for each segment (AudioCodec.encode: ceil(length / hop), at least 1)."""
        return [max(1, -(-length // hop_length)) for _, length in self.spans()]

    def num_frames(self, hop_length: int) -> int:
        """sum(frames(hop_length)) without listing the segments: the full ones, then the shorter ones at the end.

        Segment i is full when i stride + segment <= num_samples; the others (at most
        ceil(segment / stride) of them) end at num_samples.
        """
        full = 0 if self.num_samples < self.segment else (self.num_samples - self.segment) // self.stride + 1
        tail = range(full * self.stride, max(self.num_samples, 1), self.stride)  # starts of the shorter ones
        return full * max(1, -(-self.segment // hop_length)) + sum(
            max(1, -(-(self.num_samples - start) // hop_length)) for start in tail)


def model_grid(model: AudioCodec, num_samples: int, default_seconds: float) -> SegmentGrid:
    """The grid of ``model``: its own segment length, or ``default_seconds``, and its overlap."""
    seconds = model.config.segment_seconds or default_seconds
    segment = max(model.hop_length, round(seconds * model.sample_rate))
    stride = max(1, int((1 - model.config.segment_overlap) * segment))
    return SegmentGrid(segment, stride, num_samples)


def segment_scale(x: torch.Tensor) -> torch.Tensor:
    """RMS of the channel mean (+ eps) per item: [B, C, T] -> [B]."""
    return x.mean(dim=1).pow(2).mean(dim=-1).sqrt() + NORMALIZE_EPS
