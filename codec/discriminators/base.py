"""What every discriminator returns, and the small building blocks they share.

Convention: a discriminator module maps audio ``x [B, C, T]`` to ``list[DiscriminatorOutput]``,
one entry per sub-discriminator (each STFT scale, each period, ...). The C audio channels
are the input channels of the first convolution (EnCodec's stereo convention), never folded
into the batch, so every ``logits`` and feature map keeps batch size B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class DiscriminatorOutput:
    """One sub-discriminator's verdict on a batch.

    logits:   [B, 1, ...] unnormalised scores (higher = "real"), the output of the last conv
    features: the activations after each hidden conv, [B, channels_i, ...] each, used for
              feature matching (the logits are not repeated here)
    """

    logits: Tensor
    features: list[Tensor]


def wn_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    norm: bool = True,
) -> nn.Conv2d:
    """A Conv2d with "same" padding ((k - 1) d / 2 per side), weight-normalised if `norm`."""
    padding = tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation))
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, padding=padding)
    return weight_norm(conv) if norm else conv


def complex_to_channels(spec: Tensor) -> Tensor:
    """Complex spectrogram [B, C, F, N] -> real [B, 2C, N, F]: all real parts, then all imaginary parts."""
    return torch.cat([spec.real, spec.imag], dim=1).transpose(-1, -2)


def conv_stack(convs: nn.ModuleList, activation: nn.Module, z: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Apply each hidden conv then the activation: (the last activation, every activation)."""
    features = []
    for conv in convs:
        z = activation(conv(z))
        features.append(z)
    return z, features
