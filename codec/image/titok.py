"""TiTokTokenizer: an image as a short 1-D sequence of tokens (Yu et al. 2024, arXiv 2406.07550).

    encoder  patches [B, P, dim] (P = (S / p)^2, patch p = config.downsample) + K learned latent tokens
             -> transformer -> the K latent tokens' outputs -> latent [B, D, 1, K]
    decoder  quantized latent tokens [B, K, dim] + P learned mask tokens (one per patch position)
             -> transformer -> the mask tokens' outputs -> patch pixels -> image [B, C, S, S]

Images must be exactly image_size x image_size (S). Codes are [B, Q, 1, K]: a grid (1, K), so
images keep the [B, Q, H, W] code layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..quantization import build_quantizer
from ..tokens import QuantizedTokenizer
from .config import ImageTokenizerConfig
from .output import VisualOutput


def _transformer(config: ImageTokenizerConfig) -> nn.TransformerEncoder:
    """Pre-norm transformer layers (GELU, 4x MLP, no dropout) on [B, L, transformer_dim]."""
    layer = nn.TransformerEncoderLayer(config.transformer_dim, config.transformer_heads, 4 * config.transformer_dim,
                                       dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, config.transformer_layers, norm=nn.LayerNorm(config.transformer_dim),
                                 enable_nested_tensor=False)


def _embedding(*shape: int) -> nn.Parameter:
    return nn.Parameter(0.02 * torch.randn(*shape))


class TiTokTokenizer(QuantizedTokenizer):
    """K = config.num_latent_tokens tokens per image; ``n_q`` (residual quantizers) sets the bits per token."""

    model_type = "titok_tokenizer"
    config_class = ImageTokenizerConfig

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        if config.architecture != "titok":
            raise ValueError(f"TiTokTokenizer needs architecture 'titok', got {config.architecture!r}")
        self.config = config
        dim, patch, tokens = config.transformer_dim, config.downsample, config.num_latent_tokens
        patches = (config.image_size // patch) ** 2
        # encoder
        self.patchify = nn.Conv2d(config.channels, dim, patch, stride=patch)
        self.patch_position = _embedding(1, patches, dim)
        self.latent_tokens = _embedding(1, tokens, dim)
        self.encoder = _transformer(config)
        self.to_latent = nn.Linear(dim, config.latent_dim)
        # decoder
        self.from_latent = nn.Linear(config.latent_dim, dim)
        self.latent_position = _embedding(1, tokens, dim)
        self.mask_token = _embedding(1, 1, dim)
        self.mask_position = _embedding(1, patches, dim)
        self.decoder = _transformer(config)
        self.to_pixels = nn.Linear(dim, config.channels * patch * patch)
        self.quantizer = build_quantizer(config.latent_dim, config.quantizer)
        self.n_q = self.quantizer.n_q

    def encode_latent(self, x: Tensor) -> Tensor:
        """Images [B, C, S, S] in [0, 1] -> latent [B, D, 1, K]."""
        self.config.check_images(x, exact_size=True)
        patches = self.patchify(2 * x - 1).flatten(2).transpose(1, 2) + self.patch_position  # [B, P, dim]
        latent_tokens = self.latent_tokens.expand(len(x), -1, -1)  # [B, K, dim]
        out = self.encoder(torch.cat([patches, latent_tokens], dim=1))[:, patches.shape[1]:]  # [B, K, dim]
        return self.to_latent(out).transpose(1, 2).unsqueeze(2)  # [B, D, 1, K]

    def decode_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, 1, K] -> images [B, C, S, S] clamped to [0, 1]."""
        return self._decode(latent).clamp(0, 1)

    def forward(self, x: Tensor, n_q: int | None = None) -> VisualOutput:
        """Reconstruct images [B, C, S, S] (not clamped) with n_q levels (default all)."""
        q = self.quantizer(self.encode_latent(x), n_q)
        return VisualOutput(self._decode(q.quantized), q.codes, q)

    def _decode(self, latent: Tensor) -> Tensor:
        """Latent [B, D, 1, K] -> images [B, C, S, S], not clamped."""
        expected = (self.config.latent_dim, 1, self.config.num_latent_tokens)
        if latent.dim() != 4 or tuple(latent.shape[1:]) != expected:
            raise ValueError(f"expected a latent [B, {', '.join(map(str, expected))}], got shape {tuple(latent.shape)}")
        batch, patch = len(latent), self.config.downsample
        side = self.config.image_size // patch
        latent_tokens = self.from_latent(latent.squeeze(2).transpose(1, 2)) + self.latent_position  # [B, K, dim]
        masks = (self.mask_token + self.mask_position).expand(batch, -1, -1)  # [B, P, dim]
        out = self.decoder(torch.cat([masks, latent_tokens], dim=1))[:, : masks.shape[1]]  # [B, P, dim]
        pixels = self.to_pixels(out).view(batch, side, side, self.config.channels, patch, patch)
        image = pixels.permute(0, 3, 1, 4, 2, 5).reshape(batch, self.config.channels, side * patch, side * patch)
        return (image + 1) / 2
