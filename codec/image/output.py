"""The typed result of an image or video tokenizer's training forward pass."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..quantization import QuantizerOutput


@dataclass
class VisualOutput:
    """What ``model(x)`` returns for images x [B, C, H, W] or videos x [B, C, T, H, W] in [0, 1].

    reconstruction: same shape as x, not clamped (losses see values outside [0, 1])
    codes:          [B, Q, *axes] int64
    quantizer:      the quantizer's losses, usage and perplexity (for multi-scale tokenizers, summed
                    losses and the usage / perplexity of the shared codebook over all scales)
    """

    reconstruction: Tensor
    codes: Tensor
    quantizer: QuantizerOutput
