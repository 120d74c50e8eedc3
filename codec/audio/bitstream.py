"""The ``.cdc`` compressed audio file: a versioned header plus bit-packed codes.

Byte layout (all integers big-endian)::

    offset      size  field
    0           4     magic b"CDCF"
    4           1     format version (uint8) = 1
    5           4     N: header length in bytes (uint32)
    9           N     header: UTF-8 JSON object with the fields of ``CdcHeader`` (cdc_header.py)
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

Reading trusts nothing before it is checked, cheapest first, so that no file, however forged,
costs more time or memory than its size: prefix, checksum (a damaged file stops here), header
fields and their agreement with each other (``CdcHeader.validate``: no count in the header
drives a loop or an allocation), the file length the header implies, and only then the codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from codec.errors import CodecError
from codec.files import atomic_write, check_readable

from .cdc_header import MAX_CODE_BITS, CdcHeader

MAGIC = b"CDCF"
VERSION = 1
_PREFIX = struct.Struct(">4sBI")  # magic, version, header length
_CRC = struct.Struct(">I")
MAX_HEADER_BYTES = 1 << 16


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
    return len(data) >= 4 and zlib.crc32(memoryview(data)[:-4]) == _CRC.unpack_from(data, len(data) - 4)[0]


def _parse_header(meta: bytes | memoryview) -> CdcHeader:
    """The JSON header -> a validated CdcHeader (without its scales); ValueError, TypeError or RecursionError."""
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


def _file_size(header: CdcHeader, meta_len: int) -> int:
    """Bytes of the file ``header`` (of ``meta_len`` bytes) implies: prefix, header, codes, scales, CRC."""
    return _PREFIX.size + meta_len + math.ceil(header.payload_bits / 8) + 4 * header.num_scales + _CRC.size


def _damage(data: bytes, meta_len: int) -> str:
    """What a file failing its checksum is: truncated if its header (when readable) implies more bytes."""
    if meta_len > MAX_HEADER_BYTES:
        return "is corrupted (checksum mismatch)"
    expected = _PREFIX.size + meta_len + _CRC.size  # the header, at least
    if len(data) >= expected:
        with contextlib.suppress(ValueError, TypeError, RecursionError):
            expected = _file_size(_parse_header(memoryview(data)[_PREFIX.size:_PREFIX.size + meta_len]), meta_len)
    return _truncated(len(data), expected) if len(data) < expected else "is corrupted (checksum mismatch)"


def _invalid(e: Exception) -> str:
    return f"has an invalid header ({' '.join(str(e).split())})"


def _truncated(size: int, expected: int) -> str:
    return f"is truncated ({size} bytes, but its header implies {expected})"


def decode_cdc(data: bytes, source: str = "The .cdc data") -> tuple[CdcHeader, torch.Tensor]:
    """Parse .cdc bytes -> (header, codes int64 [C, Q, F]); CodecError names ``source``.

    Checks in the order of the module docstring: each one bounds what the next one may cost.
    """
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
    if version != VERSION:  # before the checksum: another version may place it elsewhere
        raise fail(f"uses .cdc format version {version}, but only version {VERSION} is supported")
    if not _crc_ok(data):
        raise fail(_damage(data, meta_len))
    if meta_len > MAX_HEADER_BYTES:
        raise fail("has an oversized header")
    start = _PREFIX.size + meta_len  # of the codes
    if n < start + _CRC.size:
        raise fail(_truncated(n, start + _CRC.size))
    try:
        header = _parse_header(memoryview(data)[_PREFIX.size:start])
    except (ValueError, TypeError, RecursionError) as e:  # JSON, UTF-8 and field errors
        raise fail(_invalid(e)) from None
    expected = _file_size(header, meta_len)
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
        raise fail(_invalid(e)) from None
    codes = unpack_codes(memoryview(data)[start:start + payload_len],
                         (header.channels, header.n_q, header.num_frames), header.codebook_bits)
    if (codes >= np.array(header.codebook_sizes, dtype=np.int64)[None, :, None]).any():
        raise fail("is invalid (a code exceeds its codebook size)")
    return header, torch.from_numpy(codes)


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
