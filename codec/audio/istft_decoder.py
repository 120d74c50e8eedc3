"""A causal Vocos-style decoder: ConvNeXt blocks at the frame rate, then an inverse STFT.

    latent [B, D, F] -> causal conv -> N causal ConvNeXt blocks -> linear head
        -> per frame: K sub-frames, each the log-magnitude and phase of n_fft // 2 + 1 bins
        -> windowed irfft -> overlap-add with hop s = the codec's hop / K -> audio [B, 1, F * hop]

All the network's work happens at the frame rate (50 Hz for hop 320 at 16 kHz), so it costs a
fraction of a SEANet decoder's transposed-convolution stack, which runs at the sample rate.
``subframes`` (K) sets the STFT's time resolution: K = 1 gives one 40 ms window per 20 ms frame;
K = 4 gives four 10 ms windows at 5 ms hops, whose phases only have to agree over 5 ms (a low
voice's harmonics drift out of phase across a 20 ms hop at the smallest pitch error).

Causal alignment: sub-frame m (the j-th of frame t, m = t * K + j) has heard the input up to
sample (t + 1) * hop >= (m + 1) * s, so its window of ``n_fft = 2 * s`` samples (a periodic
sqrt-Hann, whose squares of two halves sum to one) ends there: it covers [(m - 1) * s, (m + 1) * s).
Output samples [m * s, (m + 1) * s) are the second half of sub-frame m plus the first half of
sub-frame m + 1: complete one sub-frame later (20 ms at hop 320 and K = 1). ``forward`` returns all
F * hop samples, the last s only half windowed (nothing follows them); streaming ``forward``
returns the completed samples and keeps the pending s, which ``flush`` returns, so that the
streamed output equals the offline one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..streaming import StreamingModule
from .conv import StreamableConv1d


@dataclass(frozen=True)
class ISTFTDecoderConfig:
    dim: int = 256  # channels of the ConvNeXt blocks
    intermediate_dim: int = 768  # hidden channels of each block's pointwise MLP
    n_layers: int = 8
    kernel_size: int = 7  # causal depthwise conv of each block (frames)
    layer_scale: float = 0.125  # initial scale of each block's residual branch
    subframes: int = 1  # STFT frames per latent frame (hop / subframes samples apart)

    def __post_init__(self) -> None:
        for name in ("dim", "intermediate_dim", "n_layers", "kernel_size", "subframes"):
            if getattr(self, name) < 1:
                raise ValueError(f"decoder.{name} must be positive, got {getattr(self, name)}")
        if not self.layer_scale > 0:
            raise ValueError(f"decoder.layer_scale must be > 0, got {self.layer_scale}")


class ConvNeXtBlock(nn.Module):
    """x + scale * MLP(LayerNorm(causal depthwise conv(x))) on [B, dim, F]."""

    def __init__(self, config: ISTFTDecoderConfig) -> None:
        super().__init__()
        dim = config.dim
        self.depthwise = StreamableConv1d(dim, dim, config.kernel_size, causal=True, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.expand = nn.Linear(dim, config.intermediate_dim)
        self.activation = nn.GELU()
        self.project = nn.Linear(config.intermediate_dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), config.layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.depthwise(x).transpose(1, 2))  # [B, F, dim]
        y = self.project(self.activation(self.expand(y))) * self.scale
        return x + y.transpose(1, 2)


@dataclass
class _OverlapState:
    batch_size: int
    pending: torch.Tensor | None = None  # [B, 1, hop] second half of the last frame, awaiting the next one


class ISTFTDecoder(StreamingModule[_OverlapState]):
    """[B, latent_dim, F] -> [B, 1, F * hop] through an inverse STFT of window 2 * hop / subframes."""

    def __init__(self, latent_dim: int, hop_length: int, config: ISTFTDecoderConfig) -> None:
        super().__init__()
        if hop_length % config.subframes:
            raise ValueError(f"decoder.subframes ({config.subframes}) must divide the hop length ({hop_length})")
        self.hop = hop_length // config.subframes  # samples between STFT frames
        self.n_fft = 2 * self.hop
        self.bins = self.n_fft // 2 + 1
        self.embed = StreamableConv1d(latent_dim, config.dim, config.kernel_size, causal=True)
        self.norm = nn.LayerNorm(config.dim)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(config) for _ in range(config.n_layers)))
        self.final_norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.subframes * 2 * self.bins)  # per latent frame: K sub-frames
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True).sqrt(), persistent=False)

    def frames(self, z: torch.Tensor) -> torch.Tensor:
        """Latent [B, D, F] -> windowed time frames [B, F * subframes, n_fft]."""
        x = self.norm(self.embed(z).transpose(1, 2)).transpose(1, 2)
        x = self.final_norm(self.blocks(x).transpose(1, 2))  # [B, F, dim]
        spectra = self.head(x).float().reshape(x.shape[0], -1, 2 * self.bins)  # [B, F * subframes, 2 * bins]
        log_magnitude, phase = spectra.chunk(2, dim=-1)
        magnitude = log_magnitude.clamp(max=12.0).exp()  # exp(12) ~ 1.6e5: a bound against overflow
        spectrum = torch.polar(magnitude, phase)  # [B, F * subframes, bins]
        return torch.fft.irfft(spectrum, n=self.n_fft, dim=-1) * self.window

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        frames = self.frames(z)  # [B, F * subframes, 2 * hop]
        batch, n_frames = frames.shape[:2]
        first, second = frames[..., : self.hop], frames[..., self.hop :]
        # output hop t = second half of (sub-)frame t + first half of frame t + 1 (none after the last)
        hops = second + torch.cat([first[:, 1:], first.new_zeros(batch, 1, self.hop)], dim=1)  # [B, F * K, hop]
        state = self.streaming_state
        if state is None:
            return hops.reshape(batch, 1, -1)
        if n_frames == 0:
            return frames.new_zeros(batch, 1, 0)
        completed = hops[:, :-1]  # the last hop waits for the next frame
        if state.pending is not None:
            completed = torch.cat([state.pending + first[:, :1], completed], dim=1)
        state.pending = second[:, -1:]
        return completed.reshape(batch, 1, -1)

    def init_streaming_state(self, batch_size: int) -> _OverlapState:
        return _OverlapState(batch_size)

    def flush(self) -> torch.Tensor:
        """Streaming: the pending last hop [B, 1, hop], or [B, 1, 0] before the first frame; the
        stream then ends (a later frame would find nothing pending)."""
        state = self.streaming_state
        if state is None:
            raise RuntimeError("flush() is for streaming mode")
        pending, state.pending = state.pending, None
        if pending is None:
            device, dtype = self._device_dtype()
            return torch.zeros(state.batch_size, 1, 0, device=device, dtype=dtype)
        return pending.reshape(pending.shape[0], 1, -1)
