"""DAC's multi-resolution, band-split complex STFT discriminator (MRD).

Each resolution takes the complex STFT (window n_fft, hop n_fft/4, Hann, not normalised,
padded like audiotools' ``match_stride`` so that there are ceil(T / hop) frames) as
2C channels [B, 2C, N, n_fft/2 + 1] and splits the frequency bins into bands
[int(lo * bins), int(hi * bins)). Every band has its own conv stack (DAC ``MRD``, filters F):

    conv (3, 9)                 2C -> F
    conv (3, 9), stride (1, 2)  F -> F   three times
    conv (3, 3)                 F -> F
    LeakyReLU(0.1) after each conv; all 5 x n_bands outputs are the features

The band outputs are concatenated along frequency and a shared conv_post (3, 3), F -> 1,
gives the logits. All convs are weight-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DiscriminatorOutput, complex_to_channels, conv_stack, wn_conv2d

MRD_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def band_bins(n_fft: int, bands: tuple[tuple[float, float], ...]) -> list[tuple[int, int]]:
    """Fractions of the spectrum -> bin ranges [start, stop) of an n_fft STFT (n_fft/2 + 1 bins)."""
    bins = n_fft // 2 + 1
    return [(int(lo * bins), int(hi * bins)) for lo, hi in bands]


class BandSplitSTFTDiscriminator(nn.Module):
    """One resolution: audio [B, C, T] -> logits [B, 1, ceil(T / hop), sum of ceil(band width / 8)]."""

    def __init__(
        self,
        n_fft: int,
        channels: int = 1,
        filters: int = 32,
        bands: tuple[tuple[float, float], ...] = MRD_BANDS,
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.bands = band_bins(n_fft, bands)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

        def stack() -> nn.ModuleList:
            strided = [wn_conv2d(filters, filters, (3, 9), stride=(1, 2)) for _ in range(3)]
            first, last = wn_conv2d(2 * channels, filters, (3, 9)), wn_conv2d(filters, filters, (3, 3))
            return nn.ModuleList([first, *strided, last])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = wn_conv2d(filters, 1, (3, 3))
        self.activation = nn.LeakyReLU(negative_slope)

    def spectrogram(self, x: Tensor) -> Tensor:
        """Audio [B, C, T] -> [B, 2C, ceil(T / hop), n_fft/2 + 1].

        Pads 3 n_fft/8 on the left and as much plus the remainder to a multiple of hop on the
        right (reflect; zeros when T is too short to reflect), runs a centred STFT and drops
        its first and last two frames: frame i is then centred on sample (i + 1/2) hop.
        """
        b, c, t = x.shape
        hop = self.hop_length
        left = (self.n_fft - hop) // 2
        right = left + (-t % hop)
        x = F.pad(x, (left, right), mode="reflect" if right < t else "constant")
        spec = torch.stft(x.reshape(b * c, -1), self.n_fft, hop, window=self.window, center=True, return_complex=True)
        spec = spec[..., 2:-2]
        return complex_to_channels(spec.reshape(b, c, *spec.shape[-2:]))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        spec = self.spectrogram(x)
        features, outs = [], []
        for (start, stop), stack in zip(self.bands, self.band_convs):
            z, band_features = conv_stack(stack, self.activation, spec[..., start:stop])
            features += band_features
            outs.append(z)
        return DiscriminatorOutput(self.conv_post(torch.cat(outs, dim=-1)), features)


class MultiResolutionDiscriminator(nn.Module):
    """One `BandSplitSTFTDiscriminator` per FFT size: audio [B, C, T] -> one output per resolution."""

    def __init__(
        self,
        n_ffts: tuple[int, ...] = (2048, 1024, 512),
        channels: int = 1,
        filters: int = 32,
        bands: tuple[tuple[float, float], ...] = MRD_BANDS,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(BandSplitSTFTDiscriminator(n, channels, filters, bands) for n in n_ffts)

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        return [d(x) for d in self.discriminators]
