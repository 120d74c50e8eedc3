"""PatchGAN discriminator for images and video frames (pix2pix, VQGAN).

A stack of strided 4x4 convs judges overlapping patches: ``x [B, C, H, W]`` gives one
``DiscriminatorOutput`` with logits [B, 1, h, w], one score per receptive field (about 34 pixels
across for 3 layers). Videos [B, C, T, H, W] are judged frame by frame (frames folded into the
batch, then unfolded again, so logits keep batch size B: [B, 1, T, h, w]).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .base import DiscriminatorOutput, conv_stack


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    channels: int = 1  # image channels
    width: int = 32  # channels of the first conv; doubled after each downsampling conv
    layers: int = 3  # strided convs (each halves H and W)

    def __post_init__(self) -> None:
        if self.channels < 1 or self.width < 1 or self.layers < 1:
            raise ValueError(f"channels, width and layers must be positive, got {self}")


class PatchDiscriminator(nn.Module):
    """Images [B, C, H, W] or videos [B, C, T, H, W] -> [DiscriminatorOutput] of patch logits."""

    def __init__(self, config: PatchDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        blocks, width, channels = [], config.width, config.channels
        for i in range(config.layers):  # conv (+ GroupNorm after the first): halves H and W
            conv = nn.Conv2d(channels, width, 4, stride=2, padding=1)
            blocks.append(nn.Sequential(conv, nn.GroupNorm(min(8, width), width)) if i else conv)
            channels, width = width, width * 2
        self.convs = nn.ModuleList(blocks)
        self.activation = nn.LeakyReLU(0.2)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        video = x.dim() == 5
        if video:
            batch, frames = x.shape[0], x.shape[2]
            x = x.transpose(1, 2).flatten(0, 1)  # [B T, C, H, W]
        z, features = conv_stack(self.convs, self.activation, x * 2 - 1)
        logits = self.out(z)
        if video:
            def unfold(t: Tensor) -> Tensor:
                return t.unflatten(0, (batch, frames)).transpose(1, 2)
            logits, features = unfold(logits), [unfold(f) for f in features]
        return [DiscriminatorOutput(logits, features)]
