"""Quantizers that turn continuous latents [B, D, *axes] into codes [B, Q, *axes] and back.

Any number of axes (one or more): audio [B, D, F], image [B, D, H, W], video [B, D, T, H, W].
`build_quantizer(dim, QuantizerConfig(...))` is the entry point; every quantizer's forward
returns a `QuantizerOutput`. `config` (QuantizerConfig) imports no quantizer; the quantizers
import it, and `build` (build_quantizer) imports both.
"""

from .build import build_quantizer
from .config import QuantizerConfig
from .factorized import FactorizedVectorQuantizer
from .fsq import FiniteScalarQuantizer
from .result import QuantizerOutput
from .rvq import ResidualVectorQuantizer
from .vq import EMACodebook, VectorQuantizer

__all__ = [
    "EMACodebook",
    "FactorizedVectorQuantizer",
    "FiniteScalarQuantizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "build_quantizer",
]
