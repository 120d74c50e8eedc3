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


def encode_segments(model: AudioCodec, x: torch.Tensor, n_q: int, grid: SegmentGrid, normalize: bool,
                    batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x [S, C, T] -> (codes [S, Q, sum of grid.frames], scales [S, N segments] or None).

    Segments of equal length are encoded ``batch_size`` at a time (x streams); 1 gives exactly the
    codes of coding each segment alone, larger batches may flip near-tie codes (float rounding).
    """
    spans = grid.spans()
    pieces: list[torch.Tensor | None] = [None] * len(spans)
    scales: list[torch.Tensor | None] = [None] * len(spans)
    for length in dict.fromkeys(length for _, length in spans):
        same = [i for i, (_, n) in enumerate(spans) if n == length]
        for chunk in (same[i:i + batch_size] for i in range(0, len(same), batch_size)):
            batch = torch.stack([x[..., spans[i][0]:spans[i][0] + length] for i in chunk], 1)  # [S, b, C, n]
            flat = batch.flatten(0, 1)
            scale = segment_scale(flat) if normalize else None
            codes = model.encode(flat if scale is None else flat / scale[:, None, None], n_q)
            codes = codes.view(*batch.shape[:2], *codes.shape[1:])  # [S, b, Q, f]
            for j, i in enumerate(chunk):
                pieces[i] = codes[:, j]
                if scale is not None:
                    scales[i] = scale.view(batch.shape[:2])[:, j]
    codes = torch.cat(pieces, dim=-1)  # type: ignore[arg-type]
    return codes, torch.stack(scales, 1) if normalize else None  # type: ignore[arg-type]


def decode_segments(model: AudioCodec, codes: torch.Tensor, grid: SegmentGrid,
                    scales: torch.Tensor | None) -> torch.Tensor:
    """(codes [S, Q, F], scales [S, N] or None) -> audio [S, C, grid.num_samples], cross-faded."""
    spans, frames = grid.spans(), grid.frames(model.hop_length)
    if len(spans) == 1:
        audio = model.decode(codes, grid.num_samples)
        return audio if scales is None else audio * scales[:, 0, None, None]
    t = torch.linspace(0, 1, grid.segment + 2, dtype=torch.float32, device=codes.device)[1:-1]
    weight = 0.5 - (t - 0.5).abs()  # [segment], a triangle, positive everywhere
    out = torch.zeros(codes.shape[0], model.channels, grid.num_samples, device=codes.device)
    total = torch.zeros(grid.num_samples, device=codes.device)
    first = 0
    for i, ((start, length), f) in enumerate(zip(spans, frames)):
        audio = model.decode(codes[..., first:first + f], length).float()
        if scales is not None:
            audio = audio * scales[:, i, None, None]
        out[..., start:start + length] += weight[:length] * audio
        total[start:start + length] += weight[:length]
        first += f
    return out / total
