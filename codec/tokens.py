"""TokenSpec: the shared description of a token stream (rate, grid, codebooks).

Every tokenizer (audio codec, image and video tokenizers, converted pretrained models)
describes its output with one ``TokenSpec``. Bitrate is computed here and nowhere else:

    bits per frame  = grid cells x sum_q log2(K_q)
    bits per second = frame rate x bits per frame        (audio, video)
    bits per item   = bits per frame                     (image: one "frame" per item)

Audio: ``frame_rate`` frames per second, ``grid=()`` (one token per codebook per frame).
Image: ``frame_rate=None``, ``grid=(H, W)``. Video: ``frame_rate`` and ``grid=(H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

Modality = Literal["audio", "image", "video"]


@dataclass(frozen=True)
class TokenSpec:
    modality: Modality
    codebook_sizes: tuple[int, ...]  # K_q for each level q (RVQ levels, FSQ: one level of prod(levels))
    frame_rate: float | None = None  # frames per second; None for images
    grid: tuple[int, ...] = ()  # token grid of one frame: () for audio, (H, W) for images/video
    latent_dim: int | None = None  # dimension of the continuous latent, if the model exposes one

    def __post_init__(self) -> None:
        if not self.codebook_sizes or any(k < 2 for k in self.codebook_sizes):
            raise ValueError(f"codebook sizes must be >= 2, got {self.codebook_sizes}")
        if self.modality in ("audio", "video") and not (self.frame_rate and self.frame_rate > 0):
            raise ValueError(f"a {self.modality} TokenSpec needs a positive frame_rate")
        if self.modality == "image" and self.frame_rate is not None:
            raise ValueError("an image TokenSpec has no frame_rate")
        if self.modality in ("image", "video") and not self.grid:
            raise ValueError(f"a {self.modality} TokenSpec needs a grid (H, W)")
        if any(g < 1 for g in self.grid):
            raise ValueError(f"grid sizes must be positive, got {self.grid}")

    @property
    def num_codebooks(self) -> int:
        return len(self.codebook_sizes)

    @property
    def codebook_bits(self) -> tuple[float, ...]:
        """log2(K_q) per level: the information of one token (not rounded up)."""
        return tuple(math.log2(k) for k in self.codebook_sizes)

    @property
    def cells_per_frame(self) -> int:
        return math.prod(self.grid)

    @property
    def tokens_per_frame(self) -> int:
        return self.cells_per_frame * self.num_codebooks

    @property
    def bits_per_frame(self) -> float:
        return self.cells_per_frame * sum(self.codebook_bits)

    @property
    def tokens_per_second(self) -> float | None:
        return None if self.frame_rate is None else self.frame_rate * self.tokens_per_frame

    @property
    def bits_per_second(self) -> float | None:
        return None if self.frame_rate is None else self.frame_rate * self.bits_per_frame

    @property
    def kbps(self) -> float | None:
        bps = self.bits_per_second
        return None if bps is None else bps / 1000.0

    def with_num_codebooks(self, n: int) -> TokenSpec:
        """The same stream using only the first ``n`` levels (variable bitrate)."""
        if not 1 <= n <= self.num_codebooks:
            raise ValueError(f"n must be in 1..{self.num_codebooks}, got {n}")
        return replace(self, codebook_sizes=self.codebook_sizes[:n])
