"""The whole-tensor segmented coding: the reference that streamed coding (codec/audio/stream.py,
compress.py) must equal exactly. It holds the whole signal, so the library does not use it."""

from __future__ import annotations

import torch

from codec.audio import AudioCodec
from codec.audio.segments import SegmentGrid, segment_scale


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
