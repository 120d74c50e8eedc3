"""Recording conditions for training crops: room reverberation, background noise and a narrower
band, each applied with its probability, all drawn from the item's generator.

A codec reproduces its input, conditions included: these teach it rooms, noise floors and
channels that the clean training speech lacks (the held-out speech users bring has them). Each
condition always takes its random draws, applied or not, so switching one on or off changes
only its own effect. Input and output: [C, T] at ``sample_rate``; the RMS level is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from .transforms import fit_length, random_uniform

DIRECT_TO_REVERB_DB = (0.0, 12.0)  # energy of the direct path over the reverberant tail, drawn per crop
NOISE_TILT = (-2.0, 0.0)  # noise power spectrum ~ f^tilt: 0 white, -1 pink, -2 brown
MAX_IMPULSE_SECONDS = 1.0


@dataclass(frozen=True)
class ConditionsConfig:
    """Probabilities (0 = off) and ranges of the conditions drawn per training crop."""

    reverb_prob: float = 0.0
    rt60_seconds: tuple[float, float] = (0.2, 0.8)  # reverberation time (60 dB decay)
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (10.0, 40.0)  # speech over noise, by RMS
    band_limit_prob: float = 0.0
    cutoff_hz: tuple[float, float] = (3400.0, 7000.0)  # upper band edge (telephone to wideband)

    def __post_init__(self) -> None:
        for name in ("rt60_seconds", "snr_db", "cutoff_hz"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("reverb_prob", "noise_prob", "band_limit_prob"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name, low_bound in (("rt60_seconds", 0.0), ("snr_db", -math.inf), ("cutoff_hz", 0.0)):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not low_bound < pair[0] <= pair[1]:
                raise ValueError(f"{name} must be two finite numbers [low, high] with "
                                 f"{'0 < ' if low_bound == 0 else ''}low <= high, got {list(pair)}")

    @property
    def active(self) -> bool:
        return max(self.reverb_prob, self.noise_prob, self.band_limit_prob) > 0


def room_impulse(rt60: float, direct_to_reverb_db: float, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """A synthetic room impulse response [L]: a unit direct path, then Gaussian noise decaying by
    60 dB over ``rt60`` seconds, with tail energy 10^(-direct_to_reverb_db / 10)."""
    length = max(2, round(min(rt60, MAX_IMPULSE_SECONDS) * sample_rate))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    tail = torch.randn(length, generator=generator, dtype=torch.float64) * torch.exp(-math.log(1000.0) * t / rt60)
    tail[0] = 0.0
    tail *= 10 ** (-direct_to_reverb_db / 20) / tail.norm().clamp_min(1e-12)
    tail[0] = 1.0
    return tail.float()


def reverberate(x: torch.Tensor, impulse: torch.Tensor) -> torch.Tensor:
    """[C, T] convolved with ``impulse`` [L] (causal, cut to T), at the input's RMS level."""
    y = AF.fftconvolve(x, impulse.expand(x.shape[0], -1))[..., : x.shape[-1]]
    return _same_rms(y, x)


def colored_noise(shape: tuple[int, int], tilt: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise [C, T] whose power spectrum falls as f^tilt, at unit RMS."""
    white = torch.randn(shape, generator=generator)
    spectrum = torch.fft.rfft(white)
    freqs = torch.arange(spectrum.shape[-1], dtype=torch.float32).clamp_min(1.0)
    noise = torch.fft.irfft(spectrum * freqs.pow(tilt / 2), n=shape[-1])
    return noise / noise.pow(2).mean().sqrt().clamp_min(1e-12)


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """x [C, T] plus ``noise`` scaled to ``snr_db`` below x's RMS (silent x: unchanged)."""
    rms = x.pow(2).mean().sqrt()
    if rms == 0:
        return x
    return x + noise * (rms / noise.pow(2).mean().sqrt().clamp_min(1e-12) * 10 ** (-snr_db / 20))


def band_limit(x: torch.Tensor, cutoff_hz: float, sample_rate: int) -> torch.Tensor:
    """[C, T] low-passed at ``cutoff_hz`` by resampling to 2 x cutoff (rounded to 100 Hz) and back."""
    low_rate = 200 * round(cutoff_hz / 100)
    if low_rate >= sample_rate:
        return x
    return fit_length(AF.resample(AF.resample(x, sample_rate, low_rate), low_rate, sample_rate), x.shape[-1])


def apply_conditions(x: torch.Tensor, config: ConditionsConfig, sample_rate: int,
                     generator: torch.Generator) -> torch.Tensor:
    """[C, T] -> [C, T]: reverberation, then noise, then a band limit, each with its probability."""
    reverb = random_uniform(0, 1, generator) < config.reverb_prob
    rt60, direct_to_reverb_db = (random_uniform(*config.rt60_seconds, generator),
                                 random_uniform(*DIRECT_TO_REVERB_DB, generator))
    impulse = room_impulse(rt60, direct_to_reverb_db, sample_rate, generator)
    if reverb:
        x = reverberate(x, impulse)
    noisy = random_uniform(0, 1, generator) < config.noise_prob
    snr = random_uniform(*config.snr_db, generator)
    noise = colored_noise(tuple(x.shape), random_uniform(*NOISE_TILT, generator), generator)
    if noisy:
        x = add_noise(x, noise, snr)
    limited = random_uniform(0, 1, generator) < config.band_limit_prob
    cutoff = random_uniform(*config.cutoff_hz, generator)
    return band_limit(x, cutoff, sample_rate) if limited else x


def _same_rms(y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    rms_y = y.pow(2).mean().sqrt()
    return y if rms_y == 0 else y * (reference.pow(2).mean().sqrt() / rms_y)
