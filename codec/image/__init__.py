"""Image tokenizers on the shared TokenSpec, quantizers and trainer.

Three architectures share one config (``ImageTokenizerConfig.architecture``):

    conv        ConvImageTokenizer    a 2-D grid of codes, downsampling 4, 8 or 16 (VQ-VAE / VQGAN)
    titok       TiTokTokenizer        a fixed number of 1-D tokens per image (TiTok)
    multiscale  MultiScaleTokenizer   residual scales 1x1 ... hxw of one codebook (VAR)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tokens import Tokenizer
    from .config import ImageTokenizerConfig

ARCHITECTURES = {  # architecture -> "module:class"
    "conv": "codec.image.conv_tokenizer:ConvImageTokenizer",
    "titok": "codec.image.titok:TiTokTokenizer",
    "multiscale": "codec.image.multiscale:MultiScaleTokenizer",
}


def build_image_tokenizer(config: ImageTokenizerConfig) -> Tokenizer:
    """A fresh tokenizer of ``config.architecture``."""
    module, name = ARCHITECTURES[config.architecture].split(":")
    return getattr(importlib.import_module(module), name)(config)
