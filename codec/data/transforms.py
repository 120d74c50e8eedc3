"""Level, length and speed operations on clips [C, T]: RMS normalisation, crops, gain, speed, peak safety."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

SILENCE_RMS = 1e-5  # -100 dBFS: quieter clips are left as they are instead of being amplified


def rms_db(x: torch.Tensor) -> float:
    """RMS level of ``x`` in dBFS (-inf for digital silence)."""
    rms = x.double().pow(2).mean().sqrt().item()
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def normalize_rms(x: torch.Tensor, target_db: float) -> torch.Tensor:
    """Scale [C, T] so that its RMS over all samples is ``target_db`` dBFS (near-silence unchanged)."""
    rms = x.double().pow(2).mean().sqrt().item()
    if rms < SILENCE_RMS:
        return x
    return x * (10 ** (target_db / 20) / rms)


def limit_peak(x: torch.Tensor) -> torch.Tensor:
    """Scale [C, T] down so that no sample exceeds 1 in magnitude (no clipping distortion)."""
    peak = x.abs().max().item() if x.numel() else 0.0
    return x / peak if peak > 1.0 else x


def fit_length(x: torch.Tensor, length: int, offset: int = 0) -> torch.Tensor:
    """[C, T] -> [C, length]: the slice starting at ``offset``, zero-padded at the end if short."""
    x = x[..., offset:offset + length]
    return F.pad(x, (0, length - x.shape[-1])) if x.shape[-1] < length else x


def random_offset(num_samples: int, length: int, generator: torch.Generator) -> int:
    """A uniform crop start in [0, num_samples - length] (0 when the clip is not longer)."""
    span = max(num_samples - length + 1, 1)  # always one draw, so later draws do not shift
    return int(torch.randint(span, (1,), generator=generator).item())


def random_uniform(low: float, high: float, generator: torch.Generator) -> float:
    """A number drawn uniformly from [low, high] (a gain in dB, a reverberation time, ...)."""
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return low + (high - low) * u


def change_speed(x: torch.Tensor, factor: float) -> torch.Tensor:
    """[C, T] played ``factor`` times faster: [C, ~T / factor], pitch and formants scaled by ``factor``.

    Resamples by the ratio round(100 * factor) / 100, so factors are used to two decimals.
    """
    orig = round(100 * factor)
    return x if orig == 100 else AF.resample(x, orig, 100)


def random_choice(values: tuple[float, ...], generator: torch.Generator) -> float:
    """One of ``values`` uniformly (always one draw, so later draws do not shift); 1.0 when empty."""
    index = int(torch.randint(max(len(values), 1), (1,), generator=generator).item())
    return values[index] if values else 1.0
