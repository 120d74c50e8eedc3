"""Forging .cdc files for the tests and the fuzz script: take a valid file apart, change its header,
put it back with a correct checksum (so that only validation can catch the forgery)."""

from __future__ import annotations

import json
import math
import struct
import zlib

from codec.audio.bitstream import MAGIC, CdcHeader

FIELDS = ["model", "model_fingerprint", "sample_rate", "frame_rate", "original_sample_rate", "channels",
          "num_samples", "num_frames", "codebook_sizes", "segment_samples", "segment_stride",
          "model_num_samples", "normalized"]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def split(data: bytes) -> tuple[dict, bytes]:
    """A file -> (its JSON header, the bytes after it without the CRC); ValueError if unreadable."""
    length = struct.unpack(">I", data[5:9])[0]
    meta = json.loads(data[9:9 + length])
    if not isinstance(meta, dict):
        raise ValueError("not an object")
    return meta, data[9 + length:-4]


def join(meta: str, rest: bytes) -> bytes:
    """Header JSON text + the bytes after it -> a file with a correct checksum."""
    blob = meta.encode("utf-8", "surrogatepass")
    return with_crc(MAGIC + b"\x01" + struct.pack(">I", len(blob)) + blob + rest)


def fit_payload(data: bytes, max_bytes: int) -> bytes:
    """When the (forged) header is self-consistent, pad or cut the codes to the length it implies (up
    to ``max_bytes``), so that the parser gets past its length check to the codes."""
    try:
        meta, rest = split(data)
        header = CdcHeader(**{**meta, "codebook_sizes": tuple(meta["codebook_sizes"])})
        header.validate(with_scales=False)
    except (ValueError, TypeError, KeyError, RecursionError):
        return data
    size = math.ceil(header.payload_bits / 8) + 4 * header.num_scales
    return data if size > max_bytes else join(json.dumps(meta), (rest + bytes(size))[:size])
