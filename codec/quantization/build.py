"""build_quantizer: the one factory from a QuantizerConfig to a quantizer module."""

from __future__ import annotations

from .config import QuantizerConfig
from .fsq import FiniteScalarQuantizer
from .lfq import LookupFreeQuantizer
from .rvq import ResidualVectorQuantizer


def build_quantizer(dim: int, config: QuantizerConfig
                    ) -> ResidualVectorQuantizer | FiniteScalarQuantizer | LookupFreeQuantizer:
    """The quantizer for a latent of `dim` channels ([B, dim, *axes] in and out)."""
    if config.kind == "fsq":
        return FiniteScalarQuantizer(dim, config)
    if config.kind == "lfq":
        return LookupFreeQuantizer(dim, config)
    return ResidualVectorQuantizer(dim, config)
