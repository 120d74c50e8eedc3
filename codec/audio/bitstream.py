"""The ``.cdc`` compressed audio file: a versioned header plus bit-packed codes.

Byte layout (all integers big-endian)::

    offset      size  field
    0           4     magic b"CDCF"
    4           1     format version (uint8) = 1
    5           4     N: header length in bytes (uint32)
    9           N     header: UTF-8 JSON object with the fields of ``CdcHeader``
    9+N         P     payload: codes [C, Q, F], P = ceil(C * F * sum(bits_q) / 8)
    9+N+P       4 C S scales [C, S] as float32 (only when the header says normalized=true)
    ...         4     CRC32 (zlib.crc32, uint32) of all bytes before it

Segmented files (non-causal models, see segments.py) give the segment grid in the header
(segment_samples, segment_stride, model_num_samples at the model rate); the F frames are the
segments' frames one after the other, S is the number of segments.

Payload bit order, MSB first, zero-padded to a whole byte::

    channel 0: frame 0: [q=0: bits_0][q=1: bits_1]...[q=Q-1], frame 1: ..., frame F-1
    channel 1: ...

where bits_q = ceil(log2 K_q) for codebook size K_q.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from codec.files import atomic_write, check_readable
from codec.errors import CodecError
from codec.tokens import TokenSpec

from .compress import EncodedAudio
from .segments import SegmentGrid

MAGIC = b"CDCF"
VERSION = 1
_PREFIX = struct.Struct(">4sBI")  # magic, version, header length
_CRC = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 16
MAX_CHANNELS = 64
MAX_CODEBOOKS = 1024
MAX_CODE_BITS = 32
MAX_SAMPLE_RATE = 1_000_000


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
    scales: tuple[float, ...] = ()  # those scales, channel-major [C * S]; stored after the codes, not in the JSON

    @property
    def grid(self) -> SegmentGrid | None:
        """The segment grid of a segmented file, else None."""
        if self.segment_samples == 0:
            return None
        return SegmentGrid(self.segment_samples, self.segment_stride, self.model_num_samples)

    @property
    def num_scales(self) -> int:
        """float32 scales stored after the codes: channels x segments, or 0."""
        valid = all(type(v) is int and v > 0 for v in (self.channels, self.segment_stride, self.model_num_samples))
        if not (self.normalized is True and self.segment_samples and valid):
            return 0  # (an invalid grid fails validation)
        return self.channels * self.grid.num_segments

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
        scales = torch.tensor(self.scales).view(self.channels, -1) if self.normalized else None
        return EncodedAudio(codes, self.token_spec, self.sample_rate, self.original_sample_rate, self.num_samples,
                            self.grid, scales)

    def actual_bitrate(self, file_size: int) -> float:
        """Bits per second of a whole file of ``file_size`` bytes (header included)."""
        return file_size * 8 / self.duration

    def validate(self, with_scales: bool = True) -> None:
        """Raise ValueError unless every field (``scales`` only if ``with_scales``) has a sane type and value."""
        for name in ("model", "model_fingerprint"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        for name, lo, hi in (
            ("sample_rate", 1, MAX_SAMPLE_RATE), ("original_sample_rate", 1, MAX_SAMPLE_RATE),
            ("channels", 1, MAX_CHANNELS), ("num_samples", 1, 1 << 48), ("num_frames", 1, 1 << 40),
        ):
            v = getattr(self, name)
            if type(v) is not int or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        fr = self.frame_rate
        if type(fr) not in (int, float) or not (math.isfinite(fr) and 0 < fr <= MAX_SAMPLE_RATE):
            raise ValueError(f"frame_rate must be a positive number, got {fr!r}")
        if fr > self.sample_rate:
            raise ValueError(f"frame_rate {fr} exceeds sample_rate {self.sample_rate}")
        ks = self.codebook_sizes
        if not isinstance(ks, tuple) or not 1 <= len(ks) <= MAX_CODEBOOKS:
            raise ValueError(f"codebook_sizes must be a tuple of 1..{MAX_CODEBOOKS} sizes")
        if any(type(k) is not int or not 2 <= k <= 1 << MAX_CODE_BITS for k in ks):
            raise ValueError(f"codebook sizes must be integers in [2, 2**{MAX_CODE_BITS}]")
        if type(self.normalized) is not bool:
            raise ValueError(f"normalized must be true or false, got {self.normalized!r}")
        seg = (self.segment_samples, self.segment_stride, self.model_num_samples)
        if any(type(v) is not int or not 0 <= v < 1 << 48 for v in seg):
            raise ValueError(f"segment fields must be integers >= 0, got {seg}")
        if self.segment_samples or self.normalized:
            if not 1 <= self.segment_stride <= self.segment_samples or self.model_num_samples < 1:
                raise ValueError(f"segment grid {seg} needs 1 <= stride <= segment and a positive length")
            if self.model_num_samples // self.segment_stride > 1 << 24:
                raise ValueError(f"segment grid {seg} has too many segments")
            hop = round(self.sample_rate / fr)
            if sum(self.grid.frames(hop)) != self.num_frames:
                raise ValueError(f"the segment grid {seg} does not give {self.num_frames} frames")
        if with_scales and (not isinstance(self.scales, tuple) or len(self.scales) != self.num_scales or
                            any(not (type(v) is float and math.isfinite(v) and v > 0) for v in self.scales)):
            raise ValueError(f"expected {self.num_scales} positive finite scales, got {len(self.scales)}")
        if self.duration > (self.num_frames + 1) / fr + 1.0:
            raise ValueError(
                f"num_samples ({self.num_samples}) is far longer than {self.num_frames} frames"
            )


def pack_codes(codes: np.ndarray, bits: Sequence[int]) -> bytes:
    """Bit-pack codes [C, Q, F] frame-major, bits[q] bits per code of level q, MSB first."""
    codes = np.asarray(codes)
    if codes.ndim != 3 or codes.shape[1] != len(bits):
        raise ValueError(f"expected codes [C, {len(bits)}, F], got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got {codes.dtype}")
    if any(not 1 <= b <= MAX_CODE_BITS for b in bits):
        raise ValueError(f"bits per code must be in 1..{MAX_CODE_BITS}, got {list(bits)}")
    rows = codes.astype(np.int64).transpose(0, 2, 1).reshape(-1, len(bits))  # [C*F, Q]
    limits = np.array([1 << b for b in bits], dtype=np.int64)
    if rows.size and ((rows < 0) | (rows >= limits)).any():
        raise ValueError(f"codes must lie in [0, 2**bits) per level, bits={list(bits)}")
    planes = []  # one [C*F, bits_q] uint8 bit matrix per level (loop over levels only)
    for q, b in enumerate(bits):
        shifts = np.arange(b - 1, -1, -1, dtype=np.int64)
        planes.append(((rows[:, q : q + 1] >> shifts) & 1).astype(np.uint8))
    matrix = np.concatenate(planes, axis=1) if planes else np.zeros((0, 0), np.uint8)
    return np.packbits(matrix.ravel()).tobytes()


def unpack_codes(data: bytes, shape: tuple[int, int, int], bits: Sequence[int]) -> np.ndarray:
    """Inverse of ``pack_codes``: bytes -> int64 codes of ``shape`` [C, Q, F]."""
    c, q, f = shape
    if q != len(bits):
        raise ValueError(f"shape has {q} levels but bits has {len(bits)}")
    total = sum(bits)
    nbits = c * f * total
    if len(data) * 8 < nbits:
        raise ValueError(f"need {math.ceil(nbits / 8)} bytes of payload, got {len(data)}")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=nbits)
    matrix = flat.reshape(c * f, total)  # [C*F, sum(bits)]
    rows = np.empty((c * f, q), dtype=np.int64)
    start = 0
    for level, b in enumerate(bits):
        weights = np.int64(1) << np.arange(b - 1, -1, -1, dtype=np.int64)
        rows[:, level] = matrix[:, start : start + b].astype(np.int64) @ weights
        start += b
    return rows.reshape(c, f, q).transpose(0, 2, 1).copy()


_SCALE = np.dtype(">f4")


def _header_json(header: CdcHeader) -> bytes:
    d = asdict(header)
    d["codebook_sizes"] = list(header.codebook_sizes)
    del d["scales"]  # binary, after the codes
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode("utf-8")


def header_overhead(header: CdcHeader) -> int:
    """Bytes of a .cdc file that are not packed codes: prefix + JSON header + scales + CRC."""
    return _PREFIX.size + len(_header_json(header)) + 4 * len(header.scales) + _CRC.size


def encode_cdc(header: CdcHeader, codes: torch.Tensor) -> bytes:
    """Serialize a header and codes [C, Q, F] (each < its codebook size) to .cdc bytes."""
    header.validate()
    expected = (header.channels, header.n_q, header.num_frames)
    if tuple(codes.shape) != expected:
        raise ValueError(f"codes shape {tuple(codes.shape)} does not match header {expected}")
    arr = codes.detach().cpu().to(torch.int64).numpy()
    sizes = np.array(header.codebook_sizes, dtype=np.int64)[None, :, None]
    if ((arr < 0) | (arr >= sizes)).any():
        raise ValueError("codes exceed their codebook sizes")
    meta = _header_json(header)
    scales = np.asarray(header.scales, dtype=_SCALE).tobytes()
    body = _PREFIX.pack(MAGIC, VERSION, len(meta)) + meta + pack_codes(arr, header.codebook_bits) + scales
    return body + _CRC.pack(zlib.crc32(body))


def _crc_ok(data: bytes) -> bool:
    return len(data) >= 4 and zlib.crc32(data[:-4]) == _CRC.unpack(data[-4:])[0]


def _parse_header(meta: bytes) -> CdcHeader:
    d = json.loads(meta.decode("utf-8"))
    names = {f.name for f in fields(CdcHeader)} - {"scales"}
    optional = {"segment_samples", "segment_stride", "model_num_samples", "normalized"}  # newer than v1's first files
    if not isinstance(d, dict) or not names - optional <= set(d) <= names:
        raise ValueError(f"the header must have the fields {sorted(names)}")
    if not isinstance(d["codebook_sizes"], list):
        raise ValueError("codebook_sizes must be a list")
    header = CdcHeader(**{**d, "codebook_sizes": tuple(d["codebook_sizes"])})
    header.validate(with_scales=False)
    return header


def decode_cdc(data: bytes, source: str = "The .cdc data") -> tuple[CdcHeader, torch.Tensor]:
    """Parse .cdc bytes -> (header, codes int64 [C, Q, F]); CodecError names ``source``."""
    def fail(what: str) -> CodecError:
        return CodecError(f"{source} {what}.")

    n = len(data)
    if n == 0:
        raise fail("is empty")
    if data[:4] != MAGIC[: min(n, 4)]:
        raise fail("is not a .cdc file")
    if n < _PREFIX.size:
        raise fail("is truncated")
    _, version, meta_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise fail(f"uses .cdc format version {version}, but only version {VERSION} is supported")
    if meta_len > MAX_HEADER_BYTES:
        raise fail("is corrupted (checksum mismatch)" if not _crc_ok(data) else "has an oversized header")
    if n < _PREFIX.size + meta_len + _CRC.size:
        raise fail("is truncated")
    try:
        header = _parse_header(data[_PREFIX.size : _PREFIX.size + meta_len])
        num_scales = header.num_scales
        payload_len = math.ceil(header.payload_bits / 8)
        scales_at = _PREFIX.size + meta_len + payload_len
        scales = np.frombuffer(data[scales_at:scales_at + num_scales * 4], dtype=_SCALE)
        if len(scales) == num_scales:  # else truncated: reported below
            header = dataclasses.replace(header, scales=tuple(float(v) for v in scales))
            header.validate()
    except (ValueError, TypeError, RecursionError) as e:  # JSON, UTF-8 and field errors
        if not _crc_ok(data):
            raise fail("is corrupted (checksum mismatch)") from None
        raise fail(f"has an invalid header ({' '.join(str(e).split())})") from None
    expected = scales_at + num_scales * 4 + _CRC.size
    if n < expected:
        raise fail(f"is truncated ({n} bytes, but its header implies {expected})")
    if not _crc_ok(data):
        raise fail("is corrupted (checksum mismatch)")
    if n > expected:
        raise fail(f"has {n - expected} unexpected bytes after its payload")
    start = _PREFIX.size + meta_len
    arr = unpack_codes(data[start : start + payload_len],
                       (header.channels, header.n_q, header.num_frames),
                       header.codebook_bits)
    if (arr >= np.array(header.codebook_sizes, dtype=np.int64)[None, :, None]).any():
        raise fail("is invalid (a code exceeds its codebook size)")
    return header, torch.from_numpy(arr)


def write_cdc(path: str | os.PathLike, header: CdcHeader, codes: torch.Tensor,
              force: bool = False) -> None:
    """Encode and write a .cdc file atomically (never a half-written file)."""
    data = encode_cdc(header, codes)
    with atomic_write(Path(path), force) as tmp:
        tmp.write_bytes(data)


def read_cdc(path: str | os.PathLike) -> tuple[CdcHeader, torch.Tensor]:
    """Read a .cdc file -> (header, codes int64 [C, Q, F]); CodecError on any defect."""
    p = check_readable(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CodecError(f"Input file '{p}' cannot be read ({e.strerror or e}).") from None
    return decode_cdc(data, source=f"Input file '{p}'")
