"""The ``.cdc`` compressed audio file: a versioned header plus bit-packed codes.

Every version starts with the 4 magic bytes b"CDCF" and a format version (uint8), and ends with
the same body: the packed codes, the scales of a normalised file, and a CRC32 of all bytes before
it. Only the header between them differs. ``encode_cdc`` writes version 2; ``decode_cdc`` reads
versions 1 and 2 into the same ``CdcHeader`` (cdc_header.py). docs/cdc_format.md has the same
layout with worked examples.

Version 2 (binary header; the header fields little-endian)::

    offset  size       field
    0       4          magic b"CDCF"
    4       1          format version (uint8) = 2
    5       1          flags (uint8); bit 0 is the least significant:
                         bit 0  SEGMENTED  the three segment fields below are present
                         bit 1  NORMALIZED float32 scales follow the codes (``normalized``)
                         bit 2  ONE_SIZE   one codebook size stands for all n_q levels
                         bit 3  HEX_ID     the fingerprint is lowercase hex, stored as the bytes
                                           it spells (16 hex digits: 8 bytes); else UTF-8 text
                         bit 4  WIDE       the lengths are uint64 (else uint32: all < 2**32)
                         bit 5  FLOAT64    frame_rate is a float64 (else a float32, which holds
                                           it exactly: 50, 75, 44100/512, ...)
                         bits 6-7          zero
    6       1          channels (uint8)
    7       2          n_q: codebook levels (uint16)
    9       4          sample_rate: the model's (uint32)
    13      4          original_sample_rate (uint32)
    17      4 | 8      frame_rate (float32 | float64, by FLOAT64)
    then, with L = 4 (uint32) or 8 (uint64, by WIDE):
            L          num_samples
            L          num_frames
            3 L        segment_samples, segment_stride, model_num_samples (only if SEGMENTED)
            4 | 4 n_q  codebook sizes minus one (uint32 each, so 2**32 fits): one if ONE_SIZE
            1          F: fingerprint length in bytes (uint8)
            F          model_fingerprint
            1          M: model name length in bytes (uint8)
            M          model: the registry or folder name (UTF-8)
    H                  end of the header: the body follows, as in version 1

The fingerprint and the name hold at most 255 bytes each (encode_cdc refuses longer ones); text
is UTF-8 with surrogatepass, so that a folder name from os.fsdecode comes back unchanged.

The bundled model devspeech_16khz (one piece, 12 levels of 1024 codes, a 16-hex fingerprint, a
15-byte name) gets a 58-byte header: with the 4-byte CRC, 62 bytes besides the codes, against
299-354 (n_q 1-12) in version 1. A 1-second clip at 6 kbps is then 812 bytes, 8.3% over the
nominal bitrate (version 1: 1104 bytes, 47% over); with the default devspeech_16khz_v7 (an
18-byte name) 815 bytes, 8.7% over.

Version 1 (JSON header; big-endian)::

    0       4          magic b"CDCF"
    4       1          format version (uint8) = 1
    5       4          N: header length in bytes (uint32, at most 65536)
    9       N          header: UTF-8 JSON object with the fields of ``CdcHeader`` but ``scales``
    H = 9 + N          end of the header

The body (both versions; big-endian as in version 1)::

    H       P          payload: codes [C, Q, F], P = ceil(C * F * sum(bits_q) / 8)
    H+P     4 C S      scales [C, S] as big-endian float32 (only when the header says normalized)
    ...     4          CRC32 (zlib.crc32, big-endian uint32) of all bytes before it

Segmented files (non-causal models, see segments.py) give the segment grid in the header
(segment_samples, segment_stride, model_num_samples at the model rate); the F frames are the
segments' frames one after the other, S is the number of segments.

Payload bit order, MSB first, zero-padded to a whole byte::

    channel 0: frame 0: [q=0: bits_0][q=1: bits_1]...[q=Q-1], frame 1: ..., frame F-1
    channel 1: ...

where bits_q = ceil(log2 K_q) for codebook size K_q.

Reading trusts nothing before it is checked, cheapest first, so that no file, however forged,
costs more time or memory than its size: prefix and version, checksum (a damaged file stops
here), header fields (version 2: each read only once the bytes for it are there, n_q bounded
before its sizes are read) and their agreement with each other (``CdcHeader.validate``, the same
rules for both versions: no count in the header drives a loop or an allocation), the file length
the header implies, and only then the codes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec.errors import CodecError
from codec.files import atomic_write, check_readable

from .cdc_header import MAX_CODE_BITS, MAX_CODEBOOKS, CdcHeader

if TYPE_CHECKING:  # `codec info` reads and checks a file without torch
    import torch

MAGIC = b"CDCF"
VERSION = 2  # what encode_cdc writes
VERSIONS = (1, 2)  # what decode_cdc reads
_START = struct.Struct("4sB")  # magic, version: the same in every version
_CRC = struct.Struct(">I")
# version 1
_V1_PREFIX = struct.Struct(">4sBI")  # magic, version, header length
MAX_HEADER_BYTES = 1 << 16  # of a version-1 JSON header
# version 2
_V2_FIXED = struct.Struct("<BBHII")  # flags, channels, n_q, sample_rate, original_sample_rate
SEGMENTED, NORMALIZED, ONE_SIZE, HEX_ID, WIDE, FLOAT64 = (1 << bit for bit in range(6))
_KNOWN_FLAGS = 0x3F
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")
_NARROW = 0xFFFFFFFF  # lengths up to this are stored as uint32
MAX_NAME_BYTES = 255  # of the fingerprint and of the model name (a uint8 length each)
_HEX_ID = re.compile(r"(?:[0-9a-f]{2})*")


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
    """Inverse of ``pack_codes``: bytes -> int64 codes of ``shape`` [C, Q, F].

    Memory: one byte per payload bit and the codes, built a bit plane at a time.
    """
    c, q, f = shape
    if q != len(bits):
        raise ValueError(f"shape has {q} levels but bits has {len(bits)}")
    total = sum(bits)
    nbits = c * f * total
    if len(data) * 8 < nbits:
        raise ValueError(f"need {math.ceil(nbits / 8)} bytes of payload, got {len(data)}")
    matrix = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=nbits).reshape(c, f, total)
    codes = np.zeros((c, q, f), dtype=np.int64)
    column = 0
    for level, b in enumerate(bits):
        for _ in range(b):  # MSB first
            codes[:, level] <<= 1
            codes[:, level] |= matrix[:, :, column]
            column += 1
    return codes


_SCALE = np.dtype(">f4")


@dataclass(frozen=True)
class CdcLayout:
    """How a .cdc file's bytes divide: its format version and the size of each part."""

    version: int
    header_bytes: int  # magic, version and header fields: everything before the codes
    payload_bytes: int  # the packed codes
    scale_bytes: int  # the float32 scales of a normalised file
    checksum_bytes: int = _CRC.size

    @property
    def size(self) -> int:
        return self.header_bytes + self.payload_bytes + self.scale_bytes + self.checksum_bytes

    @property
    def overhead(self) -> int:
        """Bytes that are not packed codes."""
        return self.size - self.payload_bytes


# --- version 2: writing ------------------------------------------------------------------------
def _header_v2(header: CdcHeader) -> bytes:
    """The version-2 header fields of a validated ``header``: the bytes from offset 5 to the codes."""
    sizes = header.codebook_sizes
    one_size = all(k == sizes[0] for k in sizes)
    segment = (header.segment_samples, header.segment_stride, header.model_num_samples)
    segmented = any(segment)
    lengths = (header.num_samples, header.num_frames) + (segment if segmented else ())
    wide = max(lengths) > _NARROW
    rate = header.frame_rate
    float64 = _F32.unpack(_F32.pack(rate))[0] != rate
    hex_id = _HEX_ID.fullmatch(header.model_fingerprint) is not None
    fingerprint = (bytes.fromhex(header.model_fingerprint) if hex_id
                   else header.model_fingerprint.encode("utf-8", "surrogatepass"))
    name = header.model.encode("utf-8", "surrogatepass")
    for field, blob in (("model_fingerprint", fingerprint), ("model", name)):
        if len(blob) > MAX_NAME_BYTES:
            raise ValueError(f"{field} takes {len(blob)} bytes, more than the {MAX_NAME_BYTES} a .cdc header holds")
    flags = (SEGMENTED * segmented | NORMALIZED * header.normalized | ONE_SIZE * one_size | HEX_ID * hex_id
             | WIDE * wide | FLOAT64 * float64)
    stored = sizes[:1] if one_size else sizes
    return b"".join([
        _V2_FIXED.pack(flags, header.channels, header.n_q, header.sample_rate, header.original_sample_rate),
        (_F64 if float64 else _F32).pack(rate),
        struct.pack(f"<{len(lengths)}{'Q' if wide else 'I'}", *lengths),
        struct.pack(f"<{len(stored)}I", *(k - 1 for k in stored)),
        bytes([len(fingerprint)]), fingerprint, bytes([len(name)]), name,
    ])


def cdc_layout(header: CdcHeader) -> CdcLayout:
    """The layout of the file ``encode_cdc`` writes for ``header`` (format version 2)."""
    return CdcLayout(VERSION, _START.size + len(_header_v2(header)), math.ceil(header.payload_bits / 8),
                     _SCALE.itemsize * len(header.scales))


def header_overhead(header: CdcHeader) -> int:
    """Bytes of the .cdc file written for ``header`` that are not packed codes: prefix, header, scales, CRC."""
    return cdc_layout(header).overhead


def encode_cdc(header: CdcHeader, codes: torch.Tensor) -> bytes:
    """Serialize a header and codes [C, Q, F] (each < its codebook size) to .cdc bytes (format version 2)."""
    header.validate()
    expected = (header.channels, header.n_q, header.num_frames)
    if tuple(codes.shape) != expected:
        raise ValueError(f"codes shape {tuple(codes.shape)} does not match header {expected}")
    arr = codes.detach().cpu().long().numpy()
    sizes = np.array(header.codebook_sizes, dtype=np.int64)[None, :, None]
    if ((arr < 0) | (arr >= sizes)).any():
        raise ValueError("codes exceed their codebook sizes")
    scales = np.asarray(header.scales, dtype=_SCALE).tobytes()
    body = _START.pack(MAGIC, VERSION) + _header_v2(header) + pack_codes(arr, header.codebook_bits) + scales
    return body + _CRC.pack(zlib.crc32(body))


# --- reading -----------------------------------------------------------------------------------
class _Short(Exception):
    """The bytes end inside the header: the file needs at least ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _Oversized(Exception):
    """A version-1 header longer than MAX_HEADER_BYTES."""


def _crc_ok(data: bytes) -> bool:
    return len(data) >= 4 and zlib.crc32(memoryview(data)[:-4]) == _CRC.unpack_from(data, len(data) - 4)[0]


def _parse_json(meta: bytes | memoryview) -> CdcHeader:
    """A version-1 JSON header -> a validated CdcHeader (no scales); ValueError, TypeError or RecursionError."""
    d = json.loads(bytes(meta).decode("utf-8"))
    names = {f.name for f in fields(CdcHeader)} - {"scales"}
    optional = {"segment_samples", "segment_stride", "model_num_samples", "normalized"}  # newer than v1's first files
    if not isinstance(d, dict) or not names - optional <= set(d) <= names:
        raise ValueError(f"the header must have the fields {sorted(names)}")
    if not isinstance(d["codebook_sizes"], list):
        raise ValueError("codebook_sizes must be a list")
    header = CdcHeader(**{**d, "codebook_sizes": tuple(d["codebook_sizes"])})
    header.validate(with_scales=False)
    return header


def _parse_v1(data: bytes) -> tuple[CdcHeader, int]:
    """A version-1 file (>= 9 bytes) -> (its validated header without scales, the offset of the codes)."""
    meta_len = _V1_PREFIX.unpack_from(data)[2]
    if meta_len > MAX_HEADER_BYTES:
        raise _Oversized
    start = _V1_PREFIX.size + meta_len
    if len(data) < start + _CRC.size:
        raise _Short(start + _CRC.size)
    return _parse_json(memoryview(data)[_V1_PREFIX.size:start]), start


def _text(blob: bytes, field: str) -> str:
    try:
        return blob.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise ValueError(f"{field} is not UTF-8 text (byte {e.start} of {len(blob)})") from None


def _parse_v2(data: bytes) -> tuple[CdcHeader, int]:
    """A version-2 file -> (its validated header without scales, the offset of the codes).

    Reads the fields in order, each only once the bytes before the CRC hold it (else _Short); a bad
    field raises ValueError. The only count read before validation, n_q, is bounded before use.
    """
    end = len(data) - _CRC.size
    at = _START.size

    def take(layout: struct.Struct | str) -> tuple:
        nonlocal at
        layout = layout if isinstance(layout, struct.Struct) else struct.Struct(layout)
        if at + layout.size > end:
            raise _Short(at + layout.size + _CRC.size)
        values = layout.unpack_from(data, at)
        at += layout.size
        return values

    flags, channels, n_q, sample_rate, original_sample_rate = take(_V2_FIXED)
    if flags & ~_KNOWN_FLAGS:
        raise ValueError(f"flags {flags:#04x} set reserved bits ({flags & ~_KNOWN_FLAGS:#04x})")
    if not 1 <= n_q <= MAX_CODEBOOKS:
        raise ValueError(f"codebook_sizes must be a list of 1..{MAX_CODEBOOKS} sizes, got {n_q}")
    (frame_rate,) = take(_F64 if flags & FLOAT64 else _F32)
    lengths = take(f"<{5 if flags & SEGMENTED else 2}{'Q' if flags & WIDE else 'I'}")
    stored = take(f"<{1 if flags & ONE_SIZE else n_q}I")
    sizes = tuple(k + 1 for k in stored) * (n_q if flags & ONE_SIZE else 1)
    (fingerprint,) = take(f"{take('B')[0]}s")
    (name,) = take(f"{take('B')[0]}s")
    segment = dict(zip(("segment_samples", "segment_stride", "model_num_samples"), lengths[2:]))
    header = CdcHeader(
        model=_text(name, "model"),
        model_fingerprint=fingerprint.hex() if flags & HEX_ID else _text(fingerprint, "model_fingerprint"),
        sample_rate=sample_rate, frame_rate=frame_rate, original_sample_rate=original_sample_rate,
        channels=channels, num_samples=lengths[0], num_frames=lengths[1], codebook_sizes=sizes,
        normalized=bool(flags & NORMALIZED), **segment)
    header.validate(with_scales=False)
    return header, at


_PARSE: dict[int, Callable[[bytes], tuple[CdcHeader, int]]] = {1: _parse_v1, 2: _parse_v2}


def _file_size(header: CdcHeader, start: int) -> int:
    """Bytes of the file whose codes start at ``start``: header, codes, scales, CRC."""
    return start + math.ceil(header.payload_bits / 8) + _SCALE.itemsize * header.num_scales + _CRC.size


def _damage(data: bytes, version: int) -> str:
    """What a file failing its checksum is: truncated if its header (when readable) implies more bytes."""
    try:
        header, start = _PARSE[version](data)
    except _Short as e:
        return _truncated(len(data), e.size, exact=version == 1)
    except (_Oversized, ValueError, TypeError, RecursionError):
        return "is corrupted (checksum mismatch)"
    expected = _file_size(header, start)
    return _truncated(len(data), expected) if len(data) < expected else "is corrupted (checksum mismatch)"


def _invalid(e: Exception, version: int) -> str:
    return f"has an invalid header (format version {version}: {' '.join(str(e).split())})"


def _truncated(size: int, expected: int, exact: bool = True) -> str:
    return f"is truncated ({size} bytes, but its header implies {'' if exact else 'at least '}{expected})"


def _decode(data: bytes, source: str) -> tuple[CdcHeader, np.ndarray, CdcLayout]:
    """``decode_cdc``, with the codes as an array and the file's layout."""
    def fail(what: str) -> CodecError:
        return CodecError(f"{source} {what}.")

    n = len(data)
    if n == 0:
        raise fail("is empty")
    if data[:4] != MAGIC[: min(n, 4)]:
        raise fail("is not a .cdc file")
    if n < _START.size:
        raise fail("is truncated")
    version = data[4]
    if version not in VERSIONS:  # before the checksum: another version may place it elsewhere
        raise fail(f"uses .cdc format version {version}, but only versions {' and '.join(map(str, VERSIONS))} "
                   "are supported")
    if version == 1 and n < _V1_PREFIX.size:
        raise fail("is truncated")
    if not _crc_ok(data):
        raise fail(_damage(data, version))
    try:
        header, start = _PARSE[version](data)
    except _Oversized:
        raise fail("has an oversized header") from None
    except _Short as e:
        raise fail(_truncated(n, e.size, exact=version == 1)) from None
    except (ValueError, TypeError, RecursionError) as e:  # JSON, UTF-8 and field errors
        raise fail(_invalid(e, version)) from None
    expected = _file_size(header, start)
    if n < expected:
        raise fail(_truncated(n, expected))
    if n > expected:
        raise fail(f"has {n - expected} unexpected bytes after its payload")
    payload_len = math.ceil(header.payload_bits / 8)
    scales = np.frombuffer(data, dtype=_SCALE, count=header.num_scales, offset=start + payload_len)
    try:
        header = dataclasses.replace(header, scales=tuple(float(v) for v in scales))
        header.validate()
    except ValueError as e:
        raise fail(_invalid(e, version)) from None
    codes = unpack_codes(memoryview(data)[start:start + payload_len],
                         (header.channels, header.n_q, header.num_frames), header.codebook_bits)
    if (codes >= np.array(header.codebook_sizes, dtype=np.int64)[None, :, None]).any():
        raise fail("is invalid (a code exceeds its codebook size)")
    return header, codes, CdcLayout(version, start, payload_len, _SCALE.itemsize * len(scales))


def decode_cdc(data: bytes, source: str = "The .cdc data") -> tuple[CdcHeader, torch.Tensor]:
    """Parse .cdc bytes of any supported version -> (header, codes int64 [C, Q, F]); CodecError names ``source``.

    Checks in the order of the module docstring: each one bounds what the next one may cost.
    """
    import torch

    header, codes, _ = _decode(data, source)
    return header, torch.from_numpy(codes)


def write_cdc(path: str | os.PathLike, header: CdcHeader, codes: torch.Tensor,
              force: bool = False) -> None:
    """Encode and write a .cdc file atomically (never a half-written file)."""
    data = encode_cdc(header, codes)
    with atomic_write(Path(path), force) as tmp:
        tmp.write_bytes(data)


def _read_bytes(path: str | os.PathLike) -> tuple[bytes, str]:
    p = check_readable(path)
    try:
        return p.read_bytes(), f"Input file '{p}'"
    except OSError as e:
        raise CodecError(f"Input file '{p}' cannot be read ({e.strerror or e}).") from None


def read_cdc(path: str | os.PathLike) -> tuple[CdcHeader, torch.Tensor]:
    """Read a .cdc file -> (header, codes int64 [C, Q, F]); CodecError on any defect."""
    return decode_cdc(*_read_bytes(path))


def inspect_cdc(path: str | os.PathLike) -> tuple[CdcHeader, CdcLayout]:
    """Read and check a .cdc file like ``read_cdc`` -> (header, how its bytes divide: version, header size, ...)."""
    header, _, layout = _decode(*_read_bytes(path))
    return header, layout
