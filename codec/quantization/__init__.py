"""Quantizers that turn continuous latents [B, D, T] into codes [B, Q, T] and back.

`build_quantizer(dim, QuantizerConfig(...))` is the entry point; every quantizer's forward
returns a `QuantizerOutput`.
"""

from .config import QuantizerConfig, build_quantizer
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
