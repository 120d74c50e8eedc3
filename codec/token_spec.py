"""TokenSpec: the one token-rate / codebook description every tokenizer gives (see tokens.py).

All rate arithmetic lives here and nowhere else:

    information bits of a token  = log2(K_q)                 (what the code can distinguish)
    stored bits of a token       = ceil(log2(K_q))           (what a .cdc file spends on it)
    bits per frame               = grid cells x sum_q bits_q
    bits per second              = frame rate x bits per frame      (audio, video)
    bits per item                = bits per frame                   (image: one "frame" per item)

Multi-scale tokenizers (VAR) flatten their token maps of sides ``scales`` (1, 2, 4, ...), coarse
to fine, into one row: grid (1, sum of side^2). Q = ``n_q``, the number of codebook levels in use.
Residual levels (RVQ) refine each other, so any prefix of them is a valid lower bitrate; parallel
levels (e.g. several FSQ groups) are all needed. FSQ codebooks record their digit levels, so a
prediction head can factorise a code of prod(L_i) values into one digit per scalar.

It needs no torch, so that reading a .cdc header stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

Modality = Literal["audio", "image", "video"]


@dataclass(frozen=True)
class TokenSpec:
    """What a tokenizer emits: rate, grid, codebook levels and the continuous latent."""

    modality: Modality
    codebook_sizes: tuple[int, ...]  # K_q for each level q in use
    frame_rate: float | None = None  # frames per second; None for images
    grid: tuple[int, ...] = ()  # token grid of one frame: () for audio, (H, W) for images/video
    latent_dim: int | None = None  # D of the continuous latent, if the tokenizer exposes one
    residual: bool = True  # levels refine each other (RVQ): a prefix of them is a valid lower bitrate
    fsq_levels: tuple[int, ...] = ()  # FSQ digit levels L_i of every codebook (K_q = prod(L_i)); () if not FSQ
    scales: tuple[int, ...] = ()  # multi-scale tokens (VAR): the side of each square token map, coarse to fine,
    # flattened one after the other into a grid (1, sum of side^2); () if the grid is one map

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(self.codebook_sizes))
        object.__setattr__(self, "grid", tuple(self.grid))
        object.__setattr__(self, "fsq_levels", tuple(self.fsq_levels))
        object.__setattr__(self, "scales", tuple(self.scales))
        if not self.codebook_sizes or any(k < 2 for k in self.codebook_sizes):
            raise ValueError(f"codebook sizes must be >= 2, got {self.codebook_sizes}")
        if self.modality in ("audio", "video") and not (self.frame_rate and self.frame_rate > 0):
            raise ValueError(f"a {self.modality} TokenSpec needs a positive frame_rate")
        if self.modality == "image" and self.frame_rate is not None:
            raise ValueError("an image TokenSpec has no frame_rate")
        if self.modality in ("image", "video") and not self.grid:
            raise ValueError(f"a {self.modality} TokenSpec needs a grid (H, W)")
        if self.modality == "audio" and self.grid:
            raise ValueError("an audio TokenSpec has no grid")
        if any(g < 1 for g in self.grid):
            raise ValueError(f"grid sizes must be positive, got {self.grid}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.scales and (any(s < 1 for s in self.scales) or self.grid != (1, sum(s * s for s in self.scales))):
            raise ValueError(f"scales {self.scales} need the grid (1, {sum(s * s for s in self.scales)}), "
                             f"got {self.grid}")
        if self.fsq_levels and any(k != math.prod(self.fsq_levels) for k in self.codebook_sizes):
            raise ValueError(f"FSQ levels {self.fsq_levels} give {math.prod(self.fsq_levels)} codes, "
                             f"but the codebook sizes are {self.codebook_sizes}")

    # --- levels -----------------------------------------------------------------------------
    @property
    def n_q(self) -> int:
        """Number of codebook levels in use."""
        return len(self.codebook_sizes)

    @property
    def information_bits(self) -> tuple[float, ...]:
        """log2(K_q) per level: the information one token can carry."""
        return tuple(math.log2(k) for k in self.codebook_sizes)

    @property
    def stored_bits(self) -> tuple[int, ...]:
        """ceil(log2(K_q)) per level: the bits a token takes when bit-packed."""
        return tuple(max(1, (k - 1).bit_length()) for k in self.codebook_sizes)

    def with_num_codebooks(self, n_q: int) -> TokenSpec:
        """The same stream using only the first ``n_q`` residual levels (a lower bitrate)."""
        if not self.residual and n_q != self.n_q:
            raise ValueError(f"the {self.n_q} levels are parallel, not residual: all of them are needed")
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be in 1..{self.n_q}, got {n_q}")
        return replace(self, codebook_sizes=self.codebook_sizes[:n_q])

    # --- per frame and per second -------------------------------------------------------------
    @property
    def cells_per_frame(self) -> int:
        return math.prod(self.grid)

    @property
    def tokens_per_frame(self) -> int:
        return self.cells_per_frame * self.n_q

    @property
    def bits_per_frame(self) -> float:
        """Information bits of one frame (one image)."""
        return self.cells_per_frame * sum(self.information_bits)

    @property
    def stored_bits_per_frame(self) -> int:
        return self.cells_per_frame * sum(self.stored_bits)

    @property
    def tokens_per_second(self) -> float | None:
        return None if self.frame_rate is None else self.frame_rate * self.tokens_per_frame

    @property
    def bits_per_second(self) -> float | None:
        """Information bits per second (None for images)."""
        return None if self.frame_rate is None else self.frame_rate * self.bits_per_frame

    @property
    def stored_bits_per_second(self) -> float | None:
        return None if self.frame_rate is None else self.frame_rate * self.stored_bits_per_frame

    @property
    def kbps(self) -> float | None:
        bps = self.bits_per_second
        return None if bps is None else bps / 1000.0

    # --- for a given length ---------------------------------------------------------------------
    def num_tokens(self, num_frames: int = 1) -> int:
        """Tokens of ``num_frames`` frames (an image is one frame)."""
        return num_frames * self.tokens_per_frame

    def num_bits(self, num_frames: int = 1, stored: bool = False) -> float:
        """Information bits (or, with ``stored``, packed bits) of ``num_frames`` frames."""
        return num_frames * (self.stored_bits_per_frame if stored else self.bits_per_frame)

    def num_frames(self, seconds: float) -> int:
        """Frames covering ``seconds`` of signal (the last one partial)."""
        if self.frame_rate is None:
            raise ValueError("an image TokenSpec has no frames per second")
        return max(1, math.ceil(seconds * self.frame_rate - 1e-9))

    # --- bitrates of residual prefixes ----------------------------------------------------------
    def bandwidths(self) -> list[float]:
        """kbps with 1, 2, ... n_q residual levels (only the full rate if levels are parallel)."""
        if self.frame_rate is None:
            raise ValueError("an image TokenSpec has no bitrate per second; see bits_per_frame")
        counts = range(1, self.n_q + 1) if self.residual else [self.n_q]
        return [self.with_num_codebooks(n).kbps for n in counts]

    def n_q_for_kbps(self, kbps: float) -> int:
        """The most residual levels whose bitrate does not exceed ``kbps``; ValueError if ``kbps`` is
        not finite, below the lowest bitrate or above the highest."""
        if not math.isfinite(kbps):
            raise ValueError(f"the bitrate must be a finite number of kbps, got {kbps}")
        rates = self.bandwidths()
        if kbps > rates[-1] * (1 + 1e-6):
            raise ValueError(f"{kbps:g} kbps is above the highest bitrate, {rates[-1]:g} kbps")
        counts = list(range(1, self.n_q + 1)) if self.residual else [self.n_q]
        fitting = [n for n, bw in zip(counts, rates) if bw <= kbps * (1 + 1e-6)]
        if not fitting:
            raise ValueError(f"{kbps:g} kbps is below the lowest bitrate, {rates[0]:g} kbps")
        return fitting[-1]
