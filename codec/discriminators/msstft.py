"""EnCodec's multi-scale STFT (MS-STFT) discriminator.

Each scale looks at the complex STFT (real and imaginary parts as channels) of one FFT size,
hop n_fft/4, Hann window of n_fft, no centring, normalised by the window energy. Layout per
scale (EnCodec ``msstftd.py``, filters F, time x frequency kernels):

    conv (3, 9)                                   2C -> F   (no weight norm, as in EnCodec)
    conv (3, 9), stride (1, 2), dilation (d, 1)   F  -> F   for d in (1, 2, 4)
    conv (3, 3)                                   F  -> F
    LeakyReLU(0.2) after each of these 5 convs; their outputs are the features
    conv_post (3, 3)                              F  -> 1   the logits
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DiscriminatorOutput, complex_to_channels, conv_stack, wn_conv2d


class STFTDiscriminator(nn.Module):
    """One STFT scale: audio [B, C, T] -> logits [B, 1, N, n_fft/16 + 1] (N STFT frames, n_fft a multiple of 16)."""

    def __init__(
        self,
        n_fft: int,
        channels: int = 1,
        filters: int = 32,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: tuple[int, ...] = (1, 2, 4),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        k = kernel_size[0]
        convs = [wn_conv2d(2 * channels, filters, kernel_size, norm=False)]
        convs += [wn_conv2d(filters, filters, kernel_size, stride=(1, 2), dilation=(d, 1)) for d in dilations]
        convs.append(wn_conv2d(filters, filters, (k, k)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = wn_conv2d(filters, 1, (k, k))
        self.activation = nn.LeakyReLU(negative_slope)

    def spectrogram(self, x: Tensor) -> Tensor:
        """Audio [B, C, T] -> [B, 2C, N, n_fft/2 + 1]; inputs shorter than n_fft are zero-padded on the right."""
        b, c, t = x.shape
        if t < self.n_fft:
            x = F.pad(x, (0, self.n_fft - t))
        spec = torch.stft(
            x.reshape(b * c, -1), self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True
        )
        spec = spec / self.window.pow(2).sum().sqrt()
        return complex_to_channels(spec.reshape(b, c, *spec.shape[-2:]))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        z, features = conv_stack(self.convs, self.activation, self.spectrogram(x))
        return DiscriminatorOutput(self.conv_post(z), features)


class MultiScaleSTFTDiscriminator(nn.Module):
    """One `STFTDiscriminator` per FFT size: audio [B, C, T] -> one output per scale."""

    def __init__(
        self, n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128), channels: int = 1, filters: int = 32
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels, filters) for n in n_ffts)

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        return [d(x) for d in self.discriminators]
