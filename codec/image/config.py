"""ImageTokenizerConfig: the one frozen description of the three image tokenizers and their tokens.

    architecture  tokens of an image_size x image_size image          codes
    conv          a grid (image_size / downsample)^2                  [B, Q, h, w]
    titok         num_latent_tokens 1-D tokens (patches of downsample)  [B, Q, 1, K]
    multiscale    scales 1x1 ... hxw, coarse to fine, one codebook    [B, 1, 1, sum(s^2)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from ..quantization import QuantizerConfig
from ..tokens import TokenSpec

Architecture = Literal["conv", "titok", "multiscale"]


def _default_quantizer() -> QuantizerConfig:
    return QuantizerConfig(kind="ema", n_q=1, codebook_size=256)


@dataclass(frozen=True)
class ImageTokenizerConfig:
    """An image tokenizer for images [B, channels, H, W] in [0, 1].

    conv and multiscale: a conv encoder with log2(downsample) stride-2 stages (channels width,
    2 width, 4 width, 4 width, ...) and num_blocks residual blocks per resolution; the decoder
    mirrors it. titok: patches of downsample x downsample pixels and num_latent_tokens learned
    tokens through a transformer of transformer_layers layers of width transformer_dim.
    """

    architecture: Architecture = "conv"
    channels: int = 1
    image_size: int = 32  # the training side; titok and multiscale take exactly this size
    downsample: int = 4  # conv, multiscale: 4, 8 or 16; titok: the patch size
    width: int = 64  # conv, multiscale: channels of the first (full-resolution) stage
    num_blocks: int = 1  # conv, multiscale: residual blocks per resolution
    latent_dim: int = 16  # D of the latent [B, D, *token axes]
    quantizer: QuantizerConfig = field(default_factory=_default_quantizer)
    num_latent_tokens: int = 32  # titok: K tokens per image
    transformer_dim: int = 128  # titok
    transformer_layers: int = 2  # titok: layers of the encoder and of the decoder
    transformer_heads: int = 4  # titok
    scales: tuple[int, ...] = (1, 2, 4, 8)  # multiscale: sides of the token maps, the last = image_size / downsample

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(self.scales))  # lists from JSON configs
        q = self.quantizer
        checks = [
            (self.channels >= 1, f"channels must be >= 1, got {self.channels}"),
            (self.downsample >= 1, f"downsample must be >= 1, got {self.downsample}"),
            (self.architecture == "titok" or self.downsample in (4, 8, 16),
             f"downsample must be 4, 8 or 16 for the {self.architecture} architecture, got {self.downsample}"),
            (self.image_size >= 1 and self.image_size % self.downsample == 0,
             f"image_size must be a positive multiple of downsample={self.downsample}, got {self.image_size}"),
            (self.width >= 1, f"width must be >= 1, got {self.width}"),
            (self.num_blocks >= 0, f"num_blocks must be >= 0, got {self.num_blocks}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.num_latent_tokens >= 1, f"num_latent_tokens must be >= 1, got {self.num_latent_tokens}"),
            (self.transformer_layers >= 1, f"transformer_layers must be >= 1, got {self.transformer_layers}"),
            (self.transformer_heads >= 1 and self.transformer_dim % self.transformer_heads == 0,
             f"transformer_dim must be a positive multiple of transformer_heads={self.transformer_heads}, "
             f"got {self.transformer_dim}"),
        ]
        if self.architecture == "multiscale":
            side = self.image_size // self.downsample
            checks += [
                (len(self.scales) >= 1 and all(a < b for a, b in zip(self.scales, self.scales[1:]))
                 and self.scales[0] >= 1, f"scales must be increasing positive sides, got {self.scales}"),
                (self.scales[-1:] == (side,), f"the last scale must be image_size / downsample = {side}, "
                                              f"got scales {self.scales}"),
                (not q.residual or q.n_q == 1,
                 f"the multiscale tokenizer shares one single-level codebook: quantizer.n_q must be 1, got {q.n_q}"),
            ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (H, W) of an image_size x image_size image."""
        if self.architecture == "titok":
            return (1, self.num_latent_tokens)
        if self.architecture == "multiscale":
            return (1, sum(s * s for s in self.scales))
        side = self.image_size // self.downsample
        return (side, side)

    @property
    def token_spec(self) -> TokenSpec:
        """Tokens with every codebook level in use; multi-scale levels are parallel (a prefix of the
        scales is not a prefix of levels)."""
        q = self.quantizer
        return TokenSpec("image", q.codebook_sizes, grid=self.grid, latent_dim=self.latent_dim,
                         residual=q.residual and self.architecture != "multiscale",
                         fsq_levels=q.fsq_levels if q.kind == "fsq" else (),
                         scales=self.scales if self.architecture == "multiscale" else ())

    def check_images(self, x: Tensor, exact_size: bool) -> None:
        """ValueError unless x is images [B, channels, H, W], H and W multiples of downsample
        (with ``exact_size``: image_size x image_size)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images [B, C={self.channels}, H, W], got shape {tuple(x.shape)}")
        height, width = x.shape[2:]
        if exact_size and (height, width) != (self.image_size, self.image_size):
            raise ValueError(f"the {self.architecture} tokenizer takes {self.image_size}x{self.image_size} images "
                             f"(resize or crop first), got {height}x{width}")
        if height % self.downsample or width % self.downsample or height == 0 or width == 0:
            raise ValueError(f"image height and width must be positive multiples of {self.downsample} "
                             f"(pad or crop first), got {height}x{width}")
