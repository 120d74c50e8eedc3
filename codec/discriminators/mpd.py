"""HiFi-GAN / DAC multi-period discriminator (MPD).

A period-p sub-discriminator reflect-pads the waveform to a multiple of p, folds it into a
2-d grid [B, C, T/p, p] (each column holds every p-th sample) and runs (DAC ``MPD``):

    conv (5, 1), stride (3, 1)   C -> 32 -> 128 -> 512 -> 1024   (one conv per width)
    conv (5, 1), stride 1        1024 -> 1024
    LeakyReLU(0.1) after each of these convs; their outputs are the features
    conv_post (3, 1)             1024 -> 1                        the logits

All convs are weight-normalised. Unlike DAC, a length already divisible by p is not padded.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import DiscriminatorOutput, conv_stack, wn_conv2d

MPD_WIDTHS: tuple[int, ...] = (32, 128, 512, 1024, 1024)


class PeriodDiscriminator(nn.Module):
    """One period: audio [B, C, T] -> logits [B, 1, ~ceil(T / p) / 3^(n-1), p] for n widths."""

    def __init__(
        self, period: int, channels: int = 1, widths: tuple[int, ...] = MPD_WIDTHS, negative_slope: float = 0.1
    ) -> None:
        super().__init__()
        self.period = period
        ins = (channels, *widths[:-1])
        strides = [(3, 1)] * (len(widths) - 1) + [(1, 1)]
        self.convs = nn.ModuleList(wn_conv2d(i, o, (5, 1), stride=s) for i, o, s in zip(ins, widths, strides))
        self.conv_post = wn_conv2d(widths[-1], 1, (3, 1))
        self.activation = nn.LeakyReLU(negative_slope)

    def fold(self, x: Tensor) -> Tensor:
        """Audio [B, C, T] -> [B, C, ceil(T / p), p], reflect-padded at the end (needs T > p - T % p)."""
        b, c, t = x.shape
        pad = -t % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect")
        return x.reshape(b, c, -1, self.period)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        z, features = conv_stack(self.convs, self.activation, self.fold(x))
        return DiscriminatorOutput(self.conv_post(z), features)


class MultiPeriodDiscriminator(nn.Module):
    """One `PeriodDiscriminator` per period: audio [B, C, T] -> one output per period."""

    def __init__(
        self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: int = 1, widths: tuple[int, ...] = MPD_WIDTHS
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels, widths) for p in periods)

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        return [d(x) for d in self.discriminators]
