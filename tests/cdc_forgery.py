"""Forging .cdc files for the tests and the fuzz script: take a valid file apart, change its header,
put it back with a correct checksum (so that only validation can catch the forgery).

Version 1 headers are JSON (``split`` / ``join``); version 2 headers are binary fields
(``split_v2`` / ``join_v2``, read and written here independently of bitstream.py, from the layout
in its docstring and docs/cdc_format.md). The body after the header (codes, scales) is the same in
both versions, so ``as_v1`` turns any file into a version-1 file holding the same header and codes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib

import numpy as np

from codec.audio.bitstream import FLOAT64, HEX_ID, MAGIC, NORMALIZED, ONE_SIZE, SEGMENTED, WIDE, CdcHeader

FIELDS = ["model", "model_fingerprint", "sample_rate", "frame_rate", "original_sample_rate", "channels",
          "num_samples", "num_frames", "codebook_sizes", "segment_samples", "segment_stride",
          "model_num_samples", "normalized"]
SEGMENT = ("segment_samples", "segment_stride", "model_num_samples")
# version-2 integer fields and their widths in bits (the lengths: 32, or 64 with the WIDE flag)
V2_INTS = {"flags": 8, "channels": 8, "n_q": 16, "sample_rate": 32, "original_sample_rate": 32, "num_samples": 64,
           "num_frames": 64, "segment_samples": 64, "segment_stride": 64, "model_num_samples": 64,
           "fingerprint_length": 8, "model_length": 8}
V2_FLAGS = {"SEGMENTED": SEGMENTED, "NORMALIZED": NORMALIZED, "ONE_SIZE": ONE_SIZE, "HEX_ID": HEX_ID, "WIDE": WIDE,
            "FLOAT64": FLOAT64}


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


# --- version 2: the binary fields -------------------------------------------------------------
def split_v2(data: bytes) -> tuple[dict, bytes]:
    """A version-2 file -> (its raw header fields, the bytes after the header without the CRC).

    Raw fields: the integers of V2_INTS as stored (no segment fields unless SEGMENTED), frame_rate,
    sizes (the stored K - 1 values: n_q of them, or one with ONE_SIZE), fingerprint and model (bytes).
    ValueError or struct.error if the bytes end inside the header.
    """
    if data[:5] != MAGIC + b"\x02":
        raise ValueError("not a version-2 file")
    at = 5

    def take(fmt: str) -> tuple:
        nonlocal at
        values = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        if at > len(data) - 4:
            raise ValueError("the header runs into the CRC")
        return values

    raw = dict(zip(("flags", "channels", "n_q", "sample_rate", "original_sample_rate"), take("<BBHII")))
    flags = raw["flags"]
    raw["frame_rate"] = take("<d" if flags & FLOAT64 else "<f")[0]
    names = ("num_samples", "num_frames") + (SEGMENT if flags & SEGMENTED else ())
    raw.update(zip(names, take(f"<{len(names)}{'Q' if flags & WIDE else 'I'}")))
    raw["sizes"] = list(take(f"<{1 if flags & ONE_SIZE else raw['n_q']}I"))
    raw["fingerprint"] = take(f"{take('B')[0]}s")[0]
    raw["model"] = take(f"{take('B')[0]}s")[0]
    return raw, data[at:-4]


def pack_v2(raw: dict) -> bytes:
    """Raw version-2 fields -> the header bytes after the version byte, as forged as ``raw`` is:
    integers are cut to their field's width (so 2**70 or -1 becomes all ones), ``sizes`` is written
    whatever n_q says, fingerprint_length / model_length (if given) may disagree with the bytes."""
    flags = raw["flags"] & 0xFF
    wide = bool(flags & WIDE)

    def cut(name: str, value: int | None = None) -> int:
        bits = V2_INTS[name] if name not in ("num_samples", "num_frames", *SEGMENT) or wide else 32
        return int(raw.get(name, 0) if value is None else value) & ((1 << bits) - 1)

    fingerprint, model = raw["fingerprint"], raw["model"]
    with np.errstate(over="ignore"):
        rate = np.array([raw["frame_rate"]], dtype="<f8" if flags & FLOAT64 else "<f4").tobytes()
    names = ("num_samples", "num_frames") + (SEGMENT if flags & SEGMENTED else ())
    return b"".join([
        struct.pack("<BBHII", flags, *(cut(n) for n in ("channels", "n_q", "sample_rate", "original_sample_rate"))),
        rate,
        struct.pack(f"<{len(names)}{'Q' if wide else 'I'}", *(cut(n) for n in names)),
        struct.pack(f"<{len(raw['sizes'])}I", *(int(k) & 0xFFFFFFFF for k in raw["sizes"])),
        bytes([cut("fingerprint_length", raw.get("fingerprint_length", len(fingerprint)))]), fingerprint,
        bytes([cut("model_length", raw.get("model_length", len(model)))]), model,
    ])


def join_v2(raw: dict, rest: bytes) -> bytes:
    """Raw version-2 fields + the bytes after the header -> a file with a correct checksum."""
    return with_crc(MAGIC + b"\x02" + pack_v2(raw) + rest)


def header_v2(raw: dict) -> CdcHeader:
    """The CdcHeader that raw version-2 fields (as split_v2 reads them) stand for, unvalidated."""
    flags = raw["flags"]
    sizes = tuple(k + 1 for k in raw["sizes"]) * (raw["n_q"] if flags & ONE_SIZE else 1)
    return CdcHeader(
        model=raw["model"].decode("utf-8", "surrogatepass"),
        model_fingerprint=raw["fingerprint"].hex() if flags & HEX_ID else raw["fingerprint"].decode(
            "utf-8", "surrogatepass"),
        sample_rate=raw["sample_rate"], frame_rate=raw["frame_rate"], original_sample_rate=raw["original_sample_rate"],
        channels=raw["channels"], num_samples=raw["num_samples"], num_frames=raw["num_frames"], codebook_sizes=sizes,
        normalized=bool(flags & NORMALIZED), **{name: raw.get(name, 0) for name in SEGMENT})


# --- any version: the header as JSON fields ---------------------------------------------------
def _json_fields(header: CdcHeader) -> dict:
    meta = {k: v for k, v in dataclasses.asdict(header).items() if k != "scales"}
    return meta | {"codebook_sizes": list(header.codebook_sizes)}


def split(data: bytes) -> tuple[dict, bytes]:
    """A file of either version -> (its header as JSON fields, the bytes after the header without the
    CRC); ValueError (or struct.error) if unreadable."""
    if data[4:5] == b"\x02":
        raw, rest = split_v2(data)
        return _json_fields(header_v2(raw)), rest
    length = struct.unpack(">I", data[5:9])[0]
    meta = json.loads(data[9:9 + length])
    if not isinstance(meta, dict):
        raise ValueError("not an object")
    return meta, data[9 + length:-4]


def join(meta: str, rest: bytes) -> bytes:
    """Header JSON text + the bytes after it -> a version-1 file with a correct checksum."""
    blob = meta.encode("utf-8", "surrogatepass")
    return with_crc(MAGIC + b"\x01" + struct.pack(">I", len(blob)) + blob + rest)


def as_v1(data: bytes) -> bytes:
    """A valid file of either version -> the version-1 file with the same header and codes."""
    meta, rest = split(data)
    return join(json.dumps(meta, sort_keys=True, separators=(",", ":")), rest)


def _head(data: bytes) -> tuple[CdcHeader, int]:
    """A file of either version -> (its validated header, where its codes start); raises if invalid."""
    if data[4:5] == b"\x02":
        raw, rest = split_v2(data)
        return header_v2(raw), len(data) - 4 - len(rest)
    meta, rest = split(data)
    return CdcHeader(**{**meta, "codebook_sizes": tuple(meta["codebook_sizes"])}), len(data) - 4 - len(rest)


def fit_payload(data: bytes, max_bytes: int) -> bytes:
    """When the (forged) header, of either version, is self-consistent, pad or cut the codes to the
    length it implies (up to ``max_bytes``), so that the parser gets past its length check to the codes."""
    try:
        header, start = _head(data)
        header.validate(with_scales=False)
    except (ValueError, TypeError, KeyError, RecursionError, struct.error):
        return data
    size = math.ceil(header.payload_bits / 8) + 4 * header.num_scales
    return data if size > max_bytes else with_crc(data[:start] + (data[start:-4] + bytes(size))[:size])
