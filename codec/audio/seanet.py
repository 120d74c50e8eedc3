"""SEANet encoder and decoder (SoundStream / EnCodec convolutional backbone).

Encoder: conv -> [residual blocks -> strided conv (x2 channels)] per ratio -> LSTM -> conv.
    [B, channels, T] -> [B, dimension, T / hop],  hop = prod(ratios)
Decoder: the mirror image with transposed convs (optionally of another width, and ending in tanh).
    [B, dimension, F] -> [B, channels, F * hop]

``convtr_trim="symmetric"`` (non-causal only) trims ceil((k - s) / 2) samples from both ends of
each transposed conv, as ``nn.ConvTranspose1d(k, s, padding=ceil((k - s) / 2))`` does (DAC):
an odd stride then gives L * s - 1 samples, and the decoder's last
``decoder_output_deficit`` samples are not computed; they are returned as zeros, so the decoder
still gives F * hop samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .conv import ConvTransposeTrim, Norm, PadMode, StreamableConv1d, StreamableConvTranspose1d, StreamableLSTM


@dataclass(frozen=True)
class SEANetConfig:
    channels: int = 1  # audio channels
    dimension: int = 128  # latent channels
    n_filters: int = 32  # channels after the first conv, doubled at each downsampling
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder upsampling order; the encoder uses it reversed
    n_residual_layers: int = 1  # residual blocks per resolution, dilations dilation_base**j
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2  # residual blocks' hidden channels = dim // compress
    true_skip: bool = True  # identity shortcut (else a 1x1 conv)
    lstm_layers: int = 2  # 0 disables the LSTM
    activation: Literal["elu", "snake"] = "elu"
    norm: Norm = "weight_norm"
    causal: bool = True
    pad_mode: PadMode = "constant"
    decoder_n_filters: int | None = None  # the decoder's n_filters (None: n_filters)
    decoder_last_kernel_size: int | None = None  # the decoder's final conv (None: last_kernel_size)
    final_activation: Literal["none", "tanh"] = "none"  # applied to the decoded audio
    convtr_trim: ConvTransposeTrim = "balanced"  # see StreamableConvTranspose1d; "symmetric" needs causal=False

    def __post_init__(self) -> None:
        positive = ("channels", "dimension", "n_filters", "kernel_size", "last_kernel_size",
                    "residual_kernel_size", "dilation_base", "compress")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("decoder_n_filters", "decoder_last_kernel_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive or None, got {getattr(self, name)}")
        if self.norm == "time_group_norm" and self.causal:
            raise ValueError("norm='time_group_norm' normalises over the whole input: non-causal models only")
        if self.convtr_trim == "symmetric" and self.causal:
            raise ValueError("convtr_trim='symmetric' is for non-causal models only")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"ratios must be positive integers, got {self.ratios}")
        if self.n_residual_layers < 0 or self.lstm_layers < 0:
            raise ValueError("n_residual_layers and lstm_layers cannot be negative")

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def decoder_output_deficit(self) -> int:
        """How many of its F * hop output samples the decoder does not compute and returns as
        zeros: 0 unless convtr_trim="symmetric" with an odd stride (DAC 16/24 kHz: 8)."""
        deficit = 0
        for ratio in self.ratios:  # transposed conv kernel 2 * ratio: ratio % 2 samples short per layer
            deficit = deficit * ratio + (ratio % 2 if self.convtr_trim == "symmetric" else 0)
        return deficit


class Snake(nn.Module):
    """Snake activation x + sin^2(a x) / a with a learned per-channel a (DAC)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # DAC's exact float operations: a reciprocal then a product (not a division)
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def _activation(config: SEANetConfig, channels: int, inplace: bool = False) -> nn.Module:
    """``inplace`` (ELU only) where the input is a fresh tensor nothing else reads, e.g. a sum: saves a
    full-size allocation per call (ELU is a quarter of the encoder's time)."""
    return Snake(channels) if config.activation == "snake" else nn.ELU(inplace=inplace)


def _conv(config: SEANetConfig, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> StreamableConv1d:
    return StreamableConv1d(c_in, c_out, kernel, stride, dilation, config.causal, config.norm, config.pad_mode)


class ResidualBlock(nn.Module):
    """act -> dilated conv (dim -> dim/compress) -> act -> 1x1 conv (-> dim), plus a shortcut."""

    def __init__(self, config: SEANetConfig, dim: int, dilation: int) -> None:
        super().__init__()
        hidden = max(1, dim // config.compress)
        self.block = nn.Sequential(
            _activation(config, dim),
            _conv(config, dim, hidden, config.residual_kernel_size, dilation=dilation),
            _activation(config, hidden, inplace=True),  # on the conv's output
            _conv(config, hidden, dim, 1),
        )
        self.shortcut = nn.Identity() if config.true_skip else _conv(config, dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


def _residual_stack(config: SEANetConfig, dim: int) -> list[nn.Module]:
    return [ResidualBlock(config, dim, config.dilation_base**j) for j in range(config.n_residual_layers)]


class SEANetEncoder(nn.Module):
    """[B, channels, T] -> [B, dimension, T / hop] (T a multiple of hop)."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        nf = config.n_filters
        layers: list[nn.Module] = [_conv(config, config.channels, nf, config.kernel_size)]
        mult = 1
        for ratio in reversed(config.ratios):
            layers += _residual_stack(config, mult * nf)
            layers += [_activation(config, mult * nf, inplace=True),  # on a residual sum or a conv's output
                       _conv(config, mult * nf, 2 * mult * nf, 2 * ratio, ratio)]
            mult *= 2
        if config.lstm_layers:
            layers.append(StreamableLSTM(mult * nf, config.lstm_layers))
        layers += [_activation(config, mult * nf), _conv(config, mult * nf, config.dimension, config.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """[B, dimension, F] -> [B, channels, F * hop] (the last ``decoder_output_deficit`` samples zero)."""

    def __init__(self, config: SEANetConfig) -> None:
        super().__init__()
        nf, mult = config.decoder_n_filters or config.n_filters, 2 ** len(config.ratios)
        layers: list[nn.Module] = [_conv(config, config.dimension, mult * nf, config.kernel_size)]
        if config.lstm_layers:
            layers.append(StreamableLSTM(mult * nf, config.lstm_layers))
        for i, ratio in enumerate(config.ratios):
            up = StreamableConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, ratio, config.causal, config.norm,
                                           config.convtr_trim)
            # in place after a residual sum or a transposed conv's output, not on the LSTM's
            layers += [_activation(config, mult * nf, inplace=i > 0), up]
            layers += _residual_stack(config, mult * nf // 2)
            mult //= 2
        last_kernel = config.decoder_last_kernel_size or config.last_kernel_size
        layers += [_activation(config, nf, inplace=bool(config.ratios)), _conv(config, nf, config.channels, last_kernel)]
        if config.final_activation == "tanh":
            layers.append(nn.Tanh())  # pointwise and parameter-free: streaming and state keys unchanged
        self.model = nn.Sequential(*layers)
        self.deficit = config.decoder_output_deficit

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.model(z)
        return nn.functional.pad(y, (0, self.deficit)) if self.deficit else y
