"""Reconstruction losses on waveforms [B, C, T]: multi-scale mel, multi-resolution STFT, STFT phase, compressed
complex STFT, time L1, SI-SDR.

Every loss folds the audio channels into the batch, compares `pred` with `target` and returns a
scalar (mean over items), differentiable w.r.t. `pred`. Spectra use a periodic Hann window,
`center=True` and reflect padding, as audiotools' `AudioSignal.stft` does with `match_stride=False`;
mel filterbanks are librosa's default (Slaney scale, Slaney area normalisation).
"""

from __future__ import annotations


import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn


def _fold(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """[B, C, T] pair -> [B*C, T] pair, after checking that the shapes agree."""
    if pred.dim() != 3 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be [B, C, T], got {tuple(pred.shape)} and {tuple(target.shape)}")
    return pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])


def _stft(x: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """Complex STFT of x [N, T] -> [N, n_fft // 2 + 1, frames]; the window may be shorter than n_fft."""
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short for an STFT of size {n_fft}")
    return torch.stft(x, n_fft, hop_length=hop, win_length=window.shape[0], window=window.to(x.dtype),
                      center=True, pad_mode="reflect", return_complex=True)


def _power(z: Tensor) -> Tensor:
    """|z|^2 of a complex tensor, without the square root (whose gradient is undefined at 0)."""
    return z.real.square() + z.imag.square()


def _magnitude(x: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """|STFT| of x [N, T] -> [N, n_fft // 2 + 1, frames]."""
    return _stft(x, n_fft, hop, window).abs()


def _log_spec(mag: Tensor, eps: float, power: float) -> Tensor:
    return mag.clamp(min=eps).pow(power).log10()


@dataclass(frozen=True)
class MelLossConfig:
    """Multi-scale mel loss; the defaults are DAC's (7 scales, L1 on log10 mels).

    Per scale: log_weight * L1(log mels) + mag_weight * L1(mels) + l2_weight * MSE(log mels), where
    log mels = log10(clamp(mel, clamp_eps) ** pow). The MSE on log mels is EnCodec's L2 term as
    audiocraft implements it (`MultiScaleMelSpectrogramLoss`: L1 on linear mels + MSE on log mels);
    audiocraft additionally weights it per scale by sqrt(window - 1), which this config does not.
    """

    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    hop_divisor: int = 4  # hop = window // hop_divisor
    fmin: float = 0.0
    fmax: float | None = None  # None: Nyquist
    clamp_eps: float = 1e-5
    pow: float = 1.0
    log_weight: float = 1.0
    mag_weight: float = 0.0
    l2_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_lengths", tuple(int(w) for w in self.window_lengths))
        object.__setattr__(self, "n_mels", tuple(int(m) for m in self.n_mels))
        if not self.window_lengths or len(self.window_lengths) != len(self.n_mels):
            raise ValueError("window_lengths and n_mels must be non-empty and of equal length")
        if self.hop_divisor < 1 or any(w < self.hop_divisor for w in self.window_lengths):
            raise ValueError("hop_divisor must be >= 1 and no larger than any window length")
        if any(m < 1 for m in self.n_mels):
            raise ValueError("n_mels must be positive")
        if self.fmin < 0 or (self.fmax is not None and self.fmax <= self.fmin):
            raise ValueError("need 0 <= fmin < fmax")
        if self.clamp_eps <= 0 or self.pow <= 0:
            raise ValueError("clamp_eps and pow must be positive")
        if min(self.log_weight, self.mag_weight, self.l2_weight) < 0:
            raise ValueError("loss weights must be non-negative")


class MultiScaleMelLoss(nn.Module):
    """Mel-spectrogram distance summed over scales (DAC / audiotools `MelSpectrogramLoss`)."""

    def __init__(self, sample_rate: int, config: MelLossConfig = MelLossConfig()) -> None:
        super().__init__()
        fmax = sample_rate / 2 if config.fmax is None else config.fmax
        if fmax > sample_rate / 2:
            raise ValueError(f"fmax {fmax} is above the Nyquist frequency of {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.config = config
        for i, (win, n_mels) in enumerate(zip(config.window_lengths, config.n_mels)):
            with warnings.catch_warnings():  # DAC's small windows leave some mel bands empty at 16 kHz, as in DAC
                warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
                fbank = torchaudio.functional.melscale_fbanks(
                    win // 2 + 1, config.fmin, fmax, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
                )  # [F, M]
            self.register_buffer(f"window_{i}", torch.hann_window(win, periodic=True), persistent=False)
            self.register_buffer(f"fbank_{i}", fbank.T.contiguous(), persistent=False)  # [M, F]

    def mel_spectrograms(self, x: Tensor) -> list[Tensor]:
        """x [N, T] -> one linear mel spectrogram [N, M_s, frames_s] per scale s."""
        mels = []
        for i, win in enumerate(self.config.window_lengths):
            mag = _magnitude(x, win, win // self.config.hop_divisor, getattr(self, f"window_{i}"))
            mels.append(torch.matmul(getattr(self, f"fbank_{i}").to(mag.dtype), mag))
        return mels

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar loss."""
        cfg = self.config
        pred, target = _fold(pred, target)
        loss = pred.new_zeros(())
        for mel_p, mel_t in zip(self.mel_spectrograms(pred), self.mel_spectrograms(target)):
            if cfg.log_weight or cfg.l2_weight:
                log_p, log_t = _log_spec(mel_p, cfg.clamp_eps, cfg.pow), _log_spec(mel_t, cfg.clamp_eps, cfg.pow)
                loss = loss + cfg.log_weight * F.l1_loss(log_p, log_t) + cfg.l2_weight * F.mse_loss(log_p, log_t)
            if cfg.mag_weight:
                loss = loss + cfg.mag_weight * F.l1_loss(mel_p, mel_t)
        return loss


@functools.lru_cache(maxsize=8)
def _dac_mel_loss(sample_rate: int, device: str) -> MultiScaleMelLoss:
    return MultiScaleMelLoss(sample_rate, MelLossConfig()).to(device).eval()


@torch.no_grad()
def mel_distance(pred: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """DAC's mel-distance metric (7-scale L1 on log10 mels) of pred vs target [B, C, T] -> scalar."""
    return _dac_mel_loss(sample_rate, str(pred.device))(pred, target)


@dataclass(frozen=True)
class STFTLossConfig:
    """Multi-resolution STFT loss; defaults are ParallelWaveGAN's three resolutions.

    Per resolution: sc_weight * spectral convergence ||S_t - S_p||_F / ||S_t||_F (per item, then
    averaged) + log_weight * L1(log10(clamp(|S|, clamp_eps) ** pow)) + mag_weight * L1(|S|).
    Resolutions are summed (as audiotools does; ParallelWaveGAN averages them).
    """

    fft_sizes: tuple[int, ...] = (1024, 2048, 512)
    hop_sizes: tuple[int, ...] = (120, 240, 50)
    win_lengths: tuple[int, ...] = (600, 1200, 240)
    sc_weight: float = 1.0
    log_weight: float = 1.0
    mag_weight: float = 0.0
    clamp_eps: float = 1e-5
    pow: float = 1.0

    def __post_init__(self) -> None:
        for name in ("fft_sizes", "hop_sizes", "win_lengths"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if not self.fft_sizes or not len(self.fft_sizes) == len(self.hop_sizes) == len(self.win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must be non-empty and of equal length")
        for n_fft, hop, win in zip(self.fft_sizes, self.hop_sizes, self.win_lengths):
            if not (0 < hop and 0 < win <= n_fft):
                raise ValueError(f"need hop > 0 and 0 < win_length <= fft_size, got {n_fft=}, {hop=}, {win=}")
        if self.clamp_eps <= 0 or self.pow <= 0:
            raise ValueError("clamp_eps and pow must be positive")
        if min(self.sc_weight, self.log_weight, self.mag_weight) < 0:
            raise ValueError("loss weights must be non-negative")


class MultiResolutionSTFTLoss(nn.Module):
    """Linear-frequency STFT distance summed over resolutions (ParallelWaveGAN / audiotools)."""

    def __init__(self, config: STFTLossConfig = STFTLossConfig()) -> None:
        super().__init__()
        self.config = config
        for i, win in enumerate(config.win_lengths):
            self.register_buffer(f"window_{i}", torch.hann_window(win, periodic=True), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar loss."""
        cfg = self.config
        pred, target = _fold(pred, target)
        loss = pred.new_zeros(())
        for i, (n_fft, hop) in enumerate(zip(cfg.fft_sizes, cfg.hop_sizes)):
            window = getattr(self, f"window_{i}")
            mag_p, mag_t = _magnitude(pred, n_fft, hop, window), _magnitude(target, n_fft, hop, window)
            if cfg.sc_weight:
                loss = loss + cfg.sc_weight * spectral_convergence(mag_p, mag_t)
            if cfg.log_weight:
                log_p, log_t = _log_spec(mag_p, cfg.clamp_eps, cfg.pow), _log_spec(mag_t, cfg.clamp_eps, cfg.pow)
                loss = loss + cfg.log_weight * F.l1_loss(log_p, log_t)
            if cfg.mag_weight:
                loss = loss + cfg.mag_weight * F.l1_loss(mag_p, mag_t)
        return loss


PHASE_VIEWS = ("phase", "group_delay", "frequency")


@dataclass(frozen=True)
class PhaseLossConfig:
    """STFT phase loss at one resolution (Hann window of n_fft samples), over 0 ... fmax Hz."""

    n_fft: int = 512
    hop: int = 128
    fmax: float | None = None  # bins above it are not compared; None = every bin
    views: tuple[str, ...] = PHASE_VIEWS  # which of the phase, its difference across bins, across frames

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", tuple(self.views))
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"phase loss needs 0 < hop <= n_fft, got n_fft={self.n_fft}, hop={self.hop}")
        if self.fmax is not None and not self.fmax > 0:
            raise ValueError(f"phase loss needs fmax > 0 (or none), got {self.fmax}")
        if not self.views or len(set(self.views)) != len(self.views) or not set(self.views) <= set(PHASE_VIEWS):
            raise ValueError(f"phase loss views must be distinct names among {list(PHASE_VIEWS)}, got {list(self.views)}")


class PhaseLoss(nn.Module):
    """How far the STFT phase of pred is from target's, in up to three views (APNet's instantaneous
    phase, group delay and instantaneous frequency), each as 1 - cos of the phase error, so wrapping
    never matters: the phase of each bin, its difference to the next bin, and to the next frame.
    Without the first view the loss ignores a constant phase turn, as the ear does: a smooth
    all-pass filter changes the phase but hardly its differences.

    Each view's errors are averaged with weights |P| |T| of the two complex values compared: bins
    where either signal has no energy have no defined phase and do not count, and the gradient
    stays bounded (the angle's own gradient grows as 1 / |P|). Gradients reach pred's phase only.
    Each view lies in [0, 2]; the loss is their sum.
    """

    def __init__(self, sample_rate: int, config: PhaseLossConfig = PhaseLossConfig()) -> None:
        super().__init__()
        self.config = config
        self.bins = _bins_up_to(sample_rate / 2 if config.fmax is None else config.fmax, config.n_fft, sample_rate)
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar loss."""
        pred, target = _fold(pred, target)
        p, t = (_stft(x, self.config.n_fft, self.config.hop, self.window)[:, : self.bins] for x in (pred, target))
        loss = pred.new_zeros(())
        for view_p, view_t in ((_phase_view(p, name), _phase_view(t, name)) for name in self.config.views):
            size = view_p.abs()
            direction = view_p / size.clamp(min=1e-12)
            size_p = size.detach()
            weight = size_p * view_t.abs()
            # |P| |T| cos(phase error), differentiated through P's phase only (magnitudes are the other losses'
            # job): P / |P| has no radial gradient, whereas Re(P T*) would push |P| up wherever cos > 0
            agreement = (direction * view_t.conj()).real * size_p
            loss = loss + (weight - agreement).sum() / weight.sum().clamp(min=1e-12)
        return loss


def _bins_up_to(fmax: float, n_fft: int, sample_rate: int) -> int:
    """How many of an n_fft-point STFT's bins lie at or below fmax Hz (all of them at or above Nyquist)."""
    return min(n_fft // 2, int(fmax * n_fft / sample_rate)) + 1


def _phase_view(s: Tensor, name: str) -> Tensor:
    """Complex spectrum [N, bins, frames] -> the values whose phases a PhaseLoss view compares."""
    if name == "group_delay":
        return s[:, 1:] * s[:, :-1].conj()  # across bins
    if name == "frequency":
        return s[..., 1:] * s[..., :-1].conj()  # across frames
    return s


@dataclass(frozen=True)
class ComplexLossConfig:
    """Compressed complex STFT loss at one resolution (Hann window of n_fft samples), over 0 ... fmax Hz."""

    n_fft: int = 1024
    hop: int = 160
    fmax: float = 1000.0  # bins above it are not compared; low harmonics are where a waveform's phase is coded
    compress: float = 0.3  # magnitudes are raised to this power, phases kept
    eps: float = 1e-6  # added to |S|^2 before compressing: keeps the gradient finite at silence

    def __post_init__(self) -> None:
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"complex loss needs 0 < hop <= n_fft, got n_fft={self.n_fft}, hop={self.hop}")
        if not (self.fmax > 0 and 0 < self.compress <= 1 and self.eps > 0):
            raise ValueError(f"complex loss needs fmax > 0, 0 < compress <= 1 and eps > 0, got fmax={self.fmax}, "
                             f"compress={self.compress}, eps={self.eps}")


class ComplexSTFTLoss(nn.Module):
    """How far pred's waveform is from target's below fmax, phase included: per item,
    sum |C_p - C_t|^2 / sum |C_t|^2 over the bins up to fmax, with C = S (|S|^2 + eps)^((c - 1) / 2)
    the power-law compressed STFT (speech enhancement's compressed complex spectra), averaged over items.

    0 for a perfect copy, 1 for silence, about 2 for the right magnitudes with random phases: unlike
    the magnitude losses it asks for the target's phase, and only where the codes can carry it.
    """

    def __init__(self, sample_rate: int, config: ComplexLossConfig = ComplexLossConfig()) -> None:
        super().__init__()
        self.config = config
        self.bins = _bins_up_to(config.fmax, config.n_fft, sample_rate)
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True), persistent=False)

    def compressed(self, x: Tensor) -> Tensor:
        """[N, T] -> compressed complex spectrum [N, bins, frames] up to fmax."""
        s = _stft(x, self.config.n_fft, self.config.hop, self.window)[:, : self.bins]
        return s * (_power(s) + self.config.eps).pow((self.config.compress - 1) / 2)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar loss."""
        pred, target = _fold(pred, target)
        p, t = self.compressed(pred), self.compressed(target)
        error, reference = _power(p - t).flatten(1).sum(1), _power(t).flatten(1).sum(1)
        return (error / reference.clamp(min=1e-12)).mean()


def spectral_convergence(mag_pred: Tensor, mag_target: Tensor) -> Tensor:
    """Mean over items of ||S_t - S_p||_F / ||S_t||_F for magnitudes [N, F, frames] -> scalar."""
    diff = (mag_target - mag_pred).flatten(1).norm(dim=1)
    ref = mag_target.flatten(1).norm(dim=1).clamp(min=1e-12)
    return (diff / ref).mean()


def time_l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute sample error of pred vs target [B, C, T] -> scalar."""
    pred, target = _fold(pred, target)
    return F.l1_loss(pred, target)


class TimeL1Loss(nn.Module):
    """``time_l1_loss`` as a module, for loss tables."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return time_l1_loss(pred, target)


def si_sdr(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB of each channel: pred, target [B, C, T] -> [B*C].

    Both signals are made zero-mean; target is scaled by the optimal a = <p, t> / ||t||^2 and
    SI-SDR = 10 log10(||a t||^2 / ||p - a t||^2).
    """
    pred, target = _fold(pred, target)
    pred = pred - pred.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    scale = (pred * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    residual = pred - projection
    return 10 * torch.log10((projection.pow(2).sum(-1) + eps) / (residual.pow(2).sum(-1) + eps))


class SISDRLoss(nn.Module):
    """Negative mean SI-SDR (dB) of pred vs target [B, C, T] -> scalar; lower is better."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return -si_sdr(pred, target, self.eps).mean()
