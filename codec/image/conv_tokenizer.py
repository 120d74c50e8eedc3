"""ConvImageTokenizer: conv encoder -> quantizer on a 2-D grid -> conv decoder (VQ-VAE / VQGAN).

Shapes: images [B, C, H, W] in [0, 1] with H and W multiples of ``downsample`` (padding or
cropping is the caller's job), latents [B, D, H / ds, W / ds], codes [B, Q, H / ds, W / ds].
Any such size works; the TokenSpec's grid is that of ``config.image_size``.
"""

from __future__ import annotations

from torch import Tensor

from ..quantization import build_quantizer
from ..tokens import QuantizedTokenizer
from .blocks import ImageDecoder, ImageEncoder
from .config import ImageTokenizerConfig
from .output import VisualOutput


class ConvImageTokenizer(QuantizedTokenizer):
    """A 2-D grid of codes per image; ``n_q`` (residual quantizers) sets the bits per image."""

    model_type = "image_tokenizer"
    config_class = ImageTokenizerConfig

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        if config.architecture != "conv":
            raise ValueError(f"ConvImageTokenizer needs architecture 'conv', got {config.architecture!r}")
        self.config = config
        self.encoder = ImageEncoder(config)
        self.decoder = ImageDecoder(config)
        self.quantizer = build_quantizer(config.latent_dim, config.quantizer)
        self.n_q = self.quantizer.n_q

    def encode_latent(self, x: Tensor) -> Tensor:
        """Images [B, C, H, W] in [0, 1] -> latent [B, D, H / ds, W / ds]."""
        self.config.check_images(x, exact_size=False)
        return self.encoder(x)

    def decode_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, h, w] -> images [B, C, h ds, w ds] clamped to [0, 1]."""
        return self.decoder(latent).clamp(0, 1)

    def forward(self, x: Tensor, n_q: int | None = None) -> VisualOutput:
        """Reconstruct images [B, C, H, W] (not clamped) with n_q levels (default all; training may
        drop levels per item)."""
        q = self.quantizer(self.encode_latent(x), n_q)
        return VisualOutput(self.decoder(q.quantized), q.codes, q)
