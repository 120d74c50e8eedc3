"""Waveform discriminators for adversarial codec training.

`Discriminator(DiscriminatorConfig(kinds=...))` maps audio [B, C, T] to a list of
`DiscriminatorOutput` (logits + feature maps), one per sub-discriminator; the losses live in
`codec.losses.adversarial`.
"""

from .base import DiscriminatorOutput
from .config import Discriminator, DiscriminatorConfig, DiscriminatorKind
from .mpd import MultiPeriodDiscriminator, PeriodDiscriminator
from .mrd import BandSplitSTFTDiscriminator, MultiResolutionDiscriminator
from .msstft import MultiScaleSTFTDiscriminator, STFTDiscriminator

__all__ = [
    "BandSplitSTFTDiscriminator",
    "Discriminator",
    "DiscriminatorConfig",
    "DiscriminatorKind",
    "DiscriminatorOutput",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "PeriodDiscriminator",
    "STFTDiscriminator",
]
