"""DiscriminatorConfig: which discriminators to train against, and the module combining them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from torch import Tensor, nn

from .base import DiscriminatorOutput
from .mpd import MPD_WIDTHS, MultiPeriodDiscriminator
from .mrd import MRD_BANDS, MultiResolutionDiscriminator, band_bins
from .msstft import MultiScaleSTFTDiscriminator

DiscriminatorKind = Literal["msstft", "mpd", "mrd"]


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The discriminators of a codec's adversarial loss.

    kinds: any of "msstft" (EnCodec multi-scale STFT), "mpd" (HiFi-GAN/DAC multi-period) and
    "mrd" (DAC multi-resolution band-split STFT); EnCodec uses ("msstft",), DAC ("mpd", "mrd").
    Widths (`msstft_filters`, `mpd_widths`, `mrd_filters`) can be shrunk for tiny test models.
    `normalize_input` applies DAC's preprocessing (remove DC, peak-normalise each item to 0.8).
    """

    kinds: tuple[DiscriminatorKind, ...] = ("msstft",)
    channels: int = 1  # audio channels, the input channels of every first conv
    msstft_filters: int = 32
    msstft_n_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_widths: tuple[int, ...] = MPD_WIDTHS  # output channels of the hidden convs (last one unstrided)
    mrd_filters: int = 32
    mrd_n_ffts: tuple[int, ...] = (2048, 1024, 512)
    mrd_bands: tuple[tuple[float, float], ...] = MRD_BANDS
    normalize_input: bool = False

    def __post_init__(self) -> None:
        for name in ("kinds", "msstft_n_ffts", "mpd_periods", "mpd_widths", "mrd_n_ffts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # lists from JSON configs
        object.__setattr__(self, "mrd_bands", tuple(tuple(band) for band in self.mrd_bands))
        known = get_args(DiscriminatorKind)
        uses = set(self.kinds)
        checks = [
            (len(self.kinds) >= 1, "kinds must name at least one discriminator"),
            (uses <= set(known), f"unknown discriminator kind in {self.kinds}; expected some of {known}"),
            (len(uses) == len(self.kinds), f"kinds must not repeat, got {self.kinds}"),
            (self.channels >= 1, f"channels must be >= 1, got {self.channels}"),
            (self.msstft_filters >= 1, f"msstft_filters must be >= 1, got {self.msstft_filters}"),
            (len(self.msstft_n_ffts) >= 1 and all(n >= 16 and n % 4 == 0 for n in self.msstft_n_ffts),
             f"msstft_n_ffts must be one or more multiples of 4, >= 16, got {self.msstft_n_ffts}"),
            (len(self.mpd_periods) >= 1 and all(p >= 1 for p in self.mpd_periods),
             f"mpd_periods must be one or more integers >= 1, got {self.mpd_periods}"),
            (len(self.mpd_widths) >= 1 and all(w >= 1 for w in self.mpd_widths),
             f"mpd_widths must be one or more integers >= 1, got {self.mpd_widths}"),
            (self.mrd_filters >= 1, f"mrd_filters must be >= 1, got {self.mrd_filters}"),
            (len(self.mrd_n_ffts) >= 1 and all(n >= 16 and n % 4 == 0 for n in self.mrd_n_ffts),
             f"mrd_n_ffts must be one or more multiples of 4, >= 16, got {self.mrd_n_ffts}"),
            (len(self.mrd_bands) >= 1 and all(len(b) == 2 and 0.0 <= b[0] < b[1] <= 1.0 for b in self.mrd_bands),
             f"mrd_bands must be one or more (lo, hi) fractions with 0 <= lo < hi <= 1, got {self.mrd_bands}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if "mrd" in uses:
            for n in self.mrd_n_ffts:
                empty = [band for band, (a, b) in zip(self.mrd_bands, band_bins(n, self.mrd_bands)) if b <= a]
                if empty:
                    raise ValueError(f"mrd band {empty[0]} holds no frequency bin at n_fft {n}")

    @property
    def num_outputs(self) -> int:
        """Number of sub-discriminators, i.e. of `DiscriminatorOutput`s per forward."""
        sizes = {"msstft": len(self.msstft_n_ffts), "mpd": len(self.mpd_periods), "mrd": len(self.mrd_n_ffts)}
        return sum(sizes[kind] for kind in self.kinds)


class Discriminator(nn.Module):
    """All discriminators of `config.kinds`, in that order: audio [B, C, T] -> `config.num_outputs` outputs."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        build = {
            "msstft": lambda: MultiScaleSTFTDiscriminator(c.msstft_n_ffts, c.channels, c.msstft_filters),
            "mpd": lambda: MultiPeriodDiscriminator(c.mpd_periods, c.channels, c.mpd_widths),
            "mrd": lambda: MultiResolutionDiscriminator(c.mrd_n_ffts, c.channels, c.mrd_filters, c.mrd_bands),
        }
        self.discriminators = nn.ModuleList(build[kind]() for kind in c.kinds)

    @staticmethod
    def normalize(x: Tensor) -> Tensor:
        """DAC's preprocessing of [B, C, T]: subtract each signal's mean, scale its peak to 0.8."""
        x = x - x.mean(dim=-1, keepdim=True)
        return 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)

    def forward(self, x: Tensor) -> list[DiscriminatorOutput]:
        if x.dim() != 3 or x.shape[1] != self.config.channels:
            raise ValueError(f"expected audio [B, {self.config.channels}, T], got shape {tuple(x.shape)}")
        if self.config.normalize_input:
            x = self.normalize(x)
        return [out for d in self.discriminators for out in d(x)]
