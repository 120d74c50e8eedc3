"""TokenSpec and Tokenizer: the one token-rate / codebook description and the one interface.

Every tokenizer (audio codec, image and video tokenizers, converted pretrained models)
implements ``Tokenizer`` and describes its output with a ``TokenSpec`` (token_spec.py, where
all rate arithmetic lives).

Code layout (``encode`` output) and latent layout (``encode_latent`` output)::

    audio   codes [B, Q, F]          latent [B, D, F]          F frames at frame_rate
    image   codes [B, Q, H, W]       latent [B, D, H, W]       grid (H, W)
    video   codes [B, Q, T, H, W]    latent [B, D, T, H, W]    T frames at frame_rate, grid (H, W)
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from .token_spec import Modality, TokenSpec

__all__ = ["Modality", "QuantizedTokenizer", "TokenSpec", "Tokenizer"]


class Tokenizer(nn.Module, ABC):
    """A signal <-> tokens model; the language models and the trainer see only this interface.

    Shapes follow the layout in the module docstring: x is audio [B, C, T], an image
    [B, C, H, W] or a video [B, C, T, H, W]; codes are [B, Q, *axes] (int64) and latents
    [B, D, *axes] on the token axes. ``n_q`` (``set_num_codebooks``) sets how many levels
    ``encode`` and ``quantize_latent`` produce; ``token_spec`` describes exactly those.
    """

    @property
    @abstractmethod
    def token_spec(self) -> TokenSpec:
        """The tokens ``encode`` produces at the current number of levels."""

    @abstractmethod
    def set_num_codebooks(self, n_q: int) -> None:
        """Use the first ``n_q`` levels from now on; ValueError outside 1..max."""

    @abstractmethod
    def encode_latent(self, x: Tensor) -> Tensor:
        """Signal -> continuous latent [B, D, *axes] (before quantization)."""

    @abstractmethod
    def quantize_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, *axes] -> codes [B, Q, *axes] with the current levels."""

    @abstractmethod
    def dequantize(self, codes: Tensor) -> Tensor:
        """Codes [B, Q, *axes] (any Q up to the maximum) -> quantized latent [B, D, *axes]."""

    @abstractmethod
    def decode_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, *axes] -> signal."""

    def encode(self, x: Tensor) -> Tensor:
        """Signal -> codes [B, Q, *axes]."""
        return self.quantize_latent(self.encode_latent(x))

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, Q, *axes] -> signal."""
        return self.decode_latent(self.dequantize(codes))


class QuantizedTokenizer(Tokenizer):
    """A Tokenizer whose codes come from one quantizer, ``self.quantizer`` (a codec.quantization module
    with ``n_q``, ``encode`` and ``decode``), and whose ``self.config.token_spec`` describes all its
    levels: the bookkeeping of the levels in use (``self.n_q``, set in ``__init__``)."""

    @property
    def max_n_q(self) -> int:
        return self.quantizer.n_q

    @property
    def token_spec(self) -> TokenSpec:
        """The tokens ``encode`` produces at the current ``n_q`` (for the config's nominal size)."""
        return self.config.token_spec.with_num_codebooks(self.n_q)

    def set_num_codebooks(self, n_q: int) -> None:
        if not 1 <= n_q <= self.max_n_q:
            raise ValueError(f"this tokenizer has 1 to {self.max_n_q} codebooks, not {n_q}")
        self.n_q = n_q

    def quantize_latent(self, latent: Tensor, n_q: int | None = None) -> Tensor:
        """Latent [B, D, *axes] -> codes [B, Q, *axes], Q = ``n_q`` or the current number of levels."""
        return self.quantizer.encode(latent, n_q or self.n_q)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Codes [B, Q, *axes] (any Q up to the maximum) -> quantized latent [B, D, *axes]."""
        return self.quantizer.decode(codes)
