"""MultiScaleTokenizer: residual token maps from 1x1 to hxw with one shared codebook (VAR, arXiv 2404.02905).

The conv encoder gives f [B, D, h, w]. Scale by scale, coarse to fine, with f_hat = 0 at first:

    r_k    = area-downsample(f - f_hat) to s_k x s_k        the residual the scale must explain
    z_k    = quantize(r_k)                                   one single-level codebook for every scale
    f_hat += phi(bicubic-upsample(z_k) to h x w)              phi(u) = (u + conv3x3(u)) / 2, as VAR

and the conv decoder turns f_hat into the image. Tokens are all scales flattened coarse to fine
(row-major within a scale) on a grid (1, N), N = sum(s_k^2):

    codes   [B, 1, 1, N]    the codes of z_1 ... z_K
    latent  [B, D, 1, N]    encode_latent: the residuals r_1 ... r_K (before quantization);
                            dequantize: the quantized z_1 ... z_K; decode_latent sums them as above

A next-scale generator predicts the codes of scale k + 1 from those of scales 1..k: its input for
that scale is ``partial_latent(codes_1..k)`` (f_hat after k scales, [B, D, h, w]) area-downsampled to
s_(k+1) x s_(k+1), as in VAR. ``split_scales`` / ``merge_scales`` convert between the flat layout and
one map per scale. Images must be exactly image_size x image_size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quantization import QuantizerOutput, build_quantizer, codebook_metrics
from ..tokens import Tokenizer, TokenSpec
from .blocks import ImageDecoder, ImageEncoder
from .config import ImageTokenizerConfig
from .output import VisualOutput


class MultiScaleTokenizer(Tokenizer):
    """sum(s^2 for s in config.scales) tokens per image from one codebook; a single level (n_q = 1)."""

    model_type = "multiscale_tokenizer"
    config_class = ImageTokenizerConfig

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        if config.architecture != "multiscale":
            raise ValueError(f"MultiScaleTokenizer needs architecture 'multiscale', got {config.architecture!r}")
        self.config = config
        self.encoder = ImageEncoder(config)
        self.decoder = ImageDecoder(config)
        self.quantizer = build_quantizer(config.latent_dim, config.quantizer)
        self.phi = nn.Conv2d(config.latent_dim, config.latent_dim, 3, padding=1)
        self.side = config.image_size // config.downsample  # h = w of f

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    @property
    def token_spec(self) -> TokenSpec:
        return self.config.token_spec

    def set_num_codebooks(self, n_q: int) -> None:
        if n_q != 1:
            raise ValueError(f"the multiscale tokenizer has a single codebook level, not {n_q}")

    # --- the flat token layout and its scales -------------------------------------------------------
    def split_scales(self, tokens: Tensor) -> list[Tensor]:
        """Codes [B, Q, 1, N_k] or latents [B, D, 1, N_k] of the first k scales (N_k = s_1^2 + ... + s_k^2)
        -> k maps [B, Q or D, s, s], coarse to fine."""
        length = tokens.shape[-1] if tokens.dim() == 4 and tokens.shape[2] == 1 else -1
        sizes = [s * s for s in self.scales]
        ends = [sum(sizes[: k + 1]) for k in range(len(sizes))]
        if length not in ends:
            raise ValueError(f"expected tokens [B, *, 1, N] with N one of {ends} (the first scales of "
                             f"{self.scales}), got shape {tuple(tokens.shape)}")
        parts = tokens.squeeze(2).split(sizes[: ends.index(length) + 1], dim=-1)
        return [part.unflatten(-1, (s, s)) for part, s in zip(parts, self.scales)]

    def merge_scales(self, maps: list[Tensor]) -> Tensor:
        """Maps [B, X, s_k, s_k] of the first k scales, coarse to fine -> tokens [B, X, 1, N_k]."""
        sides = tuple(m.shape[-1] for m in maps)
        if not maps or sides != self.scales[: len(maps)] or any(m.shape[-2] != m.shape[-1] for m in maps):
            raise ValueError(f"expected maps of the first scales of {self.scales}, got sides "
                             f"{[tuple(m.shape[-2:]) for m in maps]}")
        return torch.cat([m.flatten(2) for m in maps], dim=-1).unsqueeze(2)

    def accumulate(self, latent: Tensor) -> Tensor:
        """Quantized latents [B, D, 1, N_k] of the first k scales -> f_hat after them, [B, D, h, w]."""
        return torch.stack([self._expand(z) for z in self.split_scales(latent)]).sum(0)

    def partial_latent(self, codes: Tensor) -> Tensor:
        """Codes [B, 1, 1, N_k] of the first k scales -> the accumulated latent f_hat [B, D, h, w] after them
        (all scales: what the decoder sees). A next-scale generator area-downsamples it to the next scale's
        side to build that scale's input."""
        return self.accumulate(self.dequantize(codes))

    # --- Tokenizer ------------------------------------------------------------------------------
    def encode_latent(self, x: Tensor) -> Tensor:
        """Images [B, C, S, S] in [0, 1] -> the residuals r_1 ... r_K flattened: [B, D, 1, N]."""
        self.config.check_images(x, exact_size=True)
        residuals, _ = self._residual_scales(self.encoder(x), lambda r: self.quantizer.decode(self.quantizer.encode(r)))
        return self.merge_scales(residuals)

    def quantize_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, 1, N] -> codes [B, 1, 1, N] (each position on its own)."""
        return self.quantizer.encode(latent)

    def dequantize(self, codes: Tensor) -> Tensor:
        """Codes [B, 1, 1, N_k] -> quantized latent [B, D, 1, N_k]."""
        return self.quantizer.decode(codes)

    def decode_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, 1, N_k] of all (or the first k) scales -> images [B, C, S, S] clamped to [0, 1]."""
        return self.decoder(self.accumulate(latent)).clamp(0, 1)

    def forward(self, x: Tensor) -> VisualOutput:
        """Reconstruct images [B, C, S, S] (not clamped); the quantizer's losses are summed over the scales,
        usage and perplexity are those of the shared codebook over all of them."""
        self.config.check_images(x, exact_size=True)
        outputs: list[QuantizerOutput] = []

        def quantize(residual: Tensor) -> Tensor:
            outputs.append(self.quantizer(residual))
            return outputs[-1].quantized

        _, f_hat = self._residual_scales(self.encoder(x), quantize)
        codes = self.merge_scales([out.codes for out in outputs])  # [B, 1, 1, N]
        usage, perplexity = codebook_metrics(codes, self.token_spec.codebook_sizes[0])
        result = QuantizerOutput(self.merge_scales([out.quantized for out in outputs]), codes,
                                 torch.stack([out.commitment_loss for out in outputs]).sum(),
                                 torch.stack([out.codebook_loss for out in outputs]).sum(), usage, perplexity)
        return VisualOutput(self.decoder(f_hat), codes, result)

    # --- the residual scales ------------------------------------------------------------------------
    def _expand(self, z: Tensor) -> Tensor:
        """A quantized scale z [B, D, s, s] -> its part of f_hat: phi(upsample(z)) [B, D, h, w]."""
        if z.shape[-1] != self.side:
            z = F.interpolate(z, size=(self.side, self.side), mode="bicubic", align_corners=False)
        return (z + self.phi(z)) / 2

    def _residual_scales(self, f: Tensor, quantize: Callable[[Tensor], Tensor]) -> tuple[list[Tensor], Tensor]:
        """f [B, D, h, w] -> (residuals r_k [B, D, s_k, s_k], f_hat [B, D, h, w]), with ``quantize`` r_k -> z_k."""
        f_hat = torch.zeros_like(f)
        residuals = []
        for side in self.scales:
            residuals.append(F.interpolate(f - f_hat, size=(side, side), mode="area"))
            f_hat = f_hat + self._expand(quantize(residuals[-1]))
        return residuals, f_hat
