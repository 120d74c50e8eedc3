"""The header of a ``.cdc`` file (bitstream.py): what it says, and when that can be believed.

One dataclass for every format version: bitstream.py reads a version-1 (JSON) or version-2
(binary) header into it, and the same ``validate`` rules apply whichever it came from.

Every field is range-checked before it is used, and the lengths must imply each other, so
that a header that passes ``validate`` costs bounded work, and decoding it costs about what its
audio needs, whatever a forged file claims (within LENGTH_SLACK frames or samples)::

    one piece:  num_frames        ~ num_samples x frame_rate / original_sample_rate
    segmented:  model_num_samples ~ num_samples x sample_rate / original_sample_rate
                num_frames        = the segment grid's frames (counted in closed form)
                hop <= segment <= MAX_OVERLAP x stride

``check_model`` then says whether a given model can decode the file.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codec.errors import CodecError
from codec.token_spec import TokenSpec

from .segments import SegmentGrid

if TYPE_CHECKING:  # reading a header needs neither torch nor the model (compress.py): `codec info` stays fast
    import torch

    from .compress import EncodedAudio

MAX_CHANNELS = 64
MAX_CODEBOOKS = 1024
MAX_CODE_BITS = 32
MAX_SAMPLE_RATE = 1_000_000
MIN_FRAME_RATE = 0.01  # frames per second
MAX_OVERLAP = 2  # a segment spans at most this many strides: decoding costs at most ~2x the audio
LENGTH_SLACK = 2  # frames (or model samples) by which a length may differ from the one the others imply
_INT_FIELDS = (  # name, lowest, highest
    ("sample_rate", 1, MAX_SAMPLE_RATE), ("original_sample_rate", 1, MAX_SAMPLE_RATE),
    ("channels", 1, MAX_CHANNELS), ("num_samples", 1, 1 << 48), ("num_frames", 1, 1 << 40),
    ("segment_samples", 0, 1 << 48), ("segment_stride", 0, 1 << 48), ("model_num_samples", 0, 1 << 48),
)


@dataclass(frozen=True)
class CdcHeader:
    model: str  # registry name or path used to encode
    model_fingerprint: str  # hex digest identifying weights + config
    sample_rate: int  # model sample rate
    frame_rate: float  # model frames per second
    original_sample_rate: int
    channels: int  # independently encoded channel streams
    num_samples: int  # original length at the original rate
    num_frames: int
    codebook_sizes: tuple[int, ...]  # K_q per level used
    segment_samples: int = 0  # segmented coding: samples per segment at the model rate (0: one piece)
    segment_stride: int = 0  # segmented coding: samples between segment starts
    model_num_samples: int = 0  # segmented coding: the length at the model rate
    normalized: bool = False  # a float32 scale per channel and segment follows the codes
    scales: tuple[float, ...] = ()  # those scales, channel-major [C * S]; stored after the codes, not in the header

    @property
    def grid(self) -> SegmentGrid | None:
        """The segment grid of a segmented file, else None."""
        if self.segment_samples == 0:
            return None
        return SegmentGrid(self.segment_samples, self.segment_stride, self.model_num_samples)

    @property
    def num_scales(self) -> int:
        """float32 scales stored after the codes (of a validated header): channels x segments, or 0."""
        return self.channels * self.grid.num_segments if self.normalized else 0

    @property
    def n_q(self) -> int:
        return len(self.codebook_sizes)

    @property
    def token_spec(self) -> TokenSpec:
        """The codes' levels and frame rate (of a validated header)."""
        return TokenSpec("audio", self.codebook_sizes, self.frame_rate)

    @property
    def codebook_bits(self) -> tuple[int, ...]:
        """Stored bits per code: ceil(log2 K_q)."""
        return self.token_spec.stored_bits

    @property
    def duration(self) -> float:
        """Original length in seconds."""
        return self.num_samples / self.original_sample_rate

    @property
    def payload_bits(self) -> int:
        """Bits of the packed codes (the scales come after them, byte-aligned)."""
        return self.channels * self.num_frames * sum(self.codebook_bits)

    @property
    def nominal_bitrate(self) -> float:
        """Stored bits per second per channel: frame_rate x sum_q ceil(log2 K_q)."""
        return self.token_spec.stored_bits_per_second

    @classmethod
    def for_encoded(cls, encoded: EncodedAudio, model: str, model_fingerprint: str) -> CdcHeader:
        """The header of a file holding ``encoded``, made by ``model`` (name) with that fingerprint."""
        grid = encoded.grid
        segmented = {} if grid is None else dict(
            segment_samples=grid.segment, segment_stride=grid.stride, model_num_samples=grid.num_samples,
            normalized=encoded.scales is not None,
            scales=() if encoded.scales is None else tuple(encoded.scales.flatten().tolist()))
        return cls(model=model, model_fingerprint=model_fingerprint, sample_rate=encoded.model_sample_rate,
                   frame_rate=encoded.token_spec.frame_rate, original_sample_rate=encoded.sample_rate,
                   channels=encoded.streams, num_samples=encoded.num_samples, num_frames=encoded.codes.shape[-1],
                   codebook_sizes=encoded.token_spec.codebook_sizes, **segmented)

    def encoded(self, codes: torch.Tensor) -> EncodedAudio:
        """This header's codes [C, Q, F] as coded audio, ready to decode."""
        import torch

        from .compress import EncodedAudio

        scales = torch.tensor(self.scales).view(self.channels, -1) if self.normalized else None
        return EncodedAudio(codes, self.token_spec, self.sample_rate, self.original_sample_rate, self.num_samples,
                            self.grid, scales)

    def actual_bitrate(self, file_size: int) -> float:
        """Bits per second of a whole file of ``file_size`` bytes (header included)."""
        return file_size * 8 / self.duration

    def validate(self, with_scales: bool = True) -> None:
        """Raise ValueError unless every field (``scales`` only if ``with_scales``) is sane and the
        lengths imply each other (the rules in the module docstring); quick whatever the values."""
        for name in ("model", "model_fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        for name, lo, hi in _INT_FIELDS:
            v = getattr(self, name)
            if type(v) is not int or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {reprlib.repr(v)}")
        fr = self.frame_rate
        if type(fr) not in (int, float) or not MIN_FRAME_RATE <= fr <= self.sample_rate:  # (NaN fails too)
            raise ValueError(f"frame_rate must be a number in [{MIN_FRAME_RATE}, sample_rate], got {reprlib.repr(fr)}")
        ks = self.codebook_sizes
        if not isinstance(ks, tuple) or not 1 <= len(ks) <= MAX_CODEBOOKS:
            raise ValueError(f"codebook_sizes must be a list of 1..{MAX_CODEBOOKS} sizes")
        if any(type(k) is not int or not 2 <= k <= 1 << MAX_CODE_BITS for k in ks):
            raise ValueError(f"codebook sizes must be integers in [2, 2**{MAX_CODE_BITS}], got {reprlib.repr(ks)}")
        if type(self.normalized) is not bool:
            raise ValueError(f"normalized must be true or false, got {reprlib.repr(self.normalized)}")
        hop = round(self.sample_rate / fr)  # samples per frame at the model rate
        if self.segment_samples or self.normalized:
            self._check_grid(hop)
        else:
            expected = max(1.0, self.num_samples * fr / self.original_sample_rate)
            if abs(self.num_frames - expected) > LENGTH_SLACK:
                raise ValueError(f"num_frames ({self.num_frames}) does not match num_samples ({self.num_samples} at "
                                 f"{self.original_sample_rate} Hz), which need about {expected:.0f} at {fr:g} "
                                 "frames per second")
        if with_scales and (not isinstance(self.scales, tuple) or len(self.scales) != self.num_scales or
                            any(not (type(v) is float and math.isfinite(v) and v > 0) for v in self.scales)):
            raise ValueError(f"expected {self.num_scales} positive finite scales, got {len(self.scales)}")

    def _check_grid(self, hop: int) -> None:
        """The segment grid: a sane shape, the length of num_samples at the model rate, num_frames frames."""
        seg = (self.segment_samples, self.segment_stride, self.model_num_samples)
        if not (1 <= self.segment_stride <= self.segment_samples <= MAX_OVERLAP * self.segment_stride and
                self.segment_samples >= hop and self.model_num_samples >= 1):
            raise ValueError(f"the segment grid {seg} needs hop ({hop}) <= segment, stride <= segment <= "
                             f"{MAX_OVERLAP} x stride and a positive length")
        sr, osr = self.sample_rate, self.original_sample_rate
        if abs(self.model_num_samples * osr - self.num_samples * sr) > LENGTH_SLACK * osr:  # exact integers
            raise ValueError(f"model_num_samples ({self.model_num_samples}) is not num_samples ({self.num_samples} at "
                             f"{osr} Hz) at {sr} Hz")
        frames = self.grid.num_frames(hop)
        if frames != self.num_frames:
            raise ValueError(f"the segment grid {seg} gives {frames} frames, not {self.num_frames}")

    def check_model(self, token_spec: TokenSpec, sample_rate: int, channels: int,
                    source: str = "The .cdc data") -> None:
        """Raise CodecError naming ``source`` unless a model with these codes, rates and channels decodes this file.

        ``token_spec`` describes all of the model's levels: the file's codebooks must be a prefix of
        them (all of them if they are parallel), at the model's sample and frame rates; a model with
        several channels codes them as one stream.
        """
        model_sizes = token_spec.codebook_sizes
        if self.n_q > len(model_sizes):
            problem = f"it uses {self.n_q} codebooks, but the model has {len(model_sizes)}"
        elif self.codebook_sizes != model_sizes[: self.n_q]:
            problem = (f"its codebook sizes {reprlib.repr(self.codebook_sizes)} are not the model's "
                       f"{reprlib.repr(model_sizes)}")
        elif not token_spec.residual and self.n_q != len(model_sizes):
            problem = f"it uses {self.n_q} of the model's {len(model_sizes)} parallel codebooks, which are all needed"
        elif self.sample_rate != sample_rate:
            problem = f"it was coded at {self.sample_rate} Hz, but the model runs at {sample_rate} Hz"
        elif not math.isclose(self.frame_rate, token_spec.frame_rate, rel_tol=1e-9):
            problem = f"it has {self.frame_rate:g} frames per second, but the model {token_spec.frame_rate:g}"
        elif channels > 1 and self.channels != 1:
            problem = f"it has {self.channels} streams, but the {channels}-channel model codes one"
        else:
            return
        raise CodecError(f"{source} does not fit the model decoding it: {problem}.")
