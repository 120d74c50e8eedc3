"""The 2-D conv encoder and decoder of the conv and multi-scale image tokenizers (VQGAN-like).

    encoder  [B, C, H, W] in [0, 1] -> stem -> (res blocks, stride-2 conv) x S -> res blocks -> [B, D, H/2^S, W/2^S]
    decoder  [B, D, h, w] -> conv -> res blocks -> (nearest x2 + conv, res blocks) x S -> [B, C, h 2^S, w 2^S]

S = log2(downsample) stages; stage i works at width * min(2^i, 4) channels. Res blocks are
GroupNorm -> SiLU -> 3x3 conv, twice, plus the input. Images enter as 2x - 1 and leave as
(y + 1) / 2, not clamped.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .config import ImageTokenizerConfig


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels``."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def stage_widths(config: ImageTokenizerConfig) -> list[int]:
    """Channels of each resolution, full resolution first: S + 1 entries."""
    stages = config.downsample.bit_length() - 1
    return [config.width * min(2**i, 4) for i in range(stages + 1)]


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))) on [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.residual(x)


def _res_blocks(in_channels: int, out_channels: int, count: int) -> list[nn.Module]:
    """``count`` res blocks from in_channels to out_channels (a 1x1 conv when count is 0 and they differ)."""
    if count == 0:
        return [] if in_channels == out_channels else [nn.Conv2d(in_channels, out_channels, 1)]
    return [ResBlock(in_channels, out_channels)] + [ResBlock(out_channels, out_channels) for _ in range(count - 1)]


class ImageEncoder(nn.Module):
    """Images [B, C, H, W] in [0, 1] -> latent [B, latent_dim, H / downsample, W / downsample]."""

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        widths = stage_widths(config)
        layers: list[nn.Module] = [nn.Conv2d(config.channels, widths[0], 3, padding=1)]
        for width, next_width in zip(widths, widths[1:]):
            layers += _res_blocks(width, width, config.num_blocks)
            layers.append(nn.Conv2d(width, next_width, 3, stride=2, padding=1))
        layers += _res_blocks(widths[-1], widths[-1], config.num_blocks)
        layers += [group_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(2 * x - 1)


class ImageDecoder(nn.Module):
    """Latent [B, latent_dim, h, w] -> images [B, C, h downsample, w downsample] (about [0, 1], not clamped)."""

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        widths = stage_widths(config)[::-1]  # lowest resolution first
        layers: list[nn.Module] = [nn.Conv2d(config.latent_dim, widths[0], 3, padding=1)]
        layers += _res_blocks(widths[0], widths[0], config.num_blocks)
        for width, next_width in zip(widths, widths[1:]):
            layers += [Upsample(width, next_width), *_res_blocks(next_width, next_width, config.num_blocks)]
        layers += [group_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: Tensor) -> Tensor:
        return (self.layers(latent) + 1) / 2


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv: [B, C_in, h, w] -> [B, C_out, 2h, 2w]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
