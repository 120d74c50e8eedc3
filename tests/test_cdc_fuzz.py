"""Property-based tests of the .cdc format (bitstream.py, cdc_header.py), with hypothesis.

Round trips: any valid header (segmented, normalised) and codes come back exactly, from the
version-2 file encode_cdc writes and from the version-1 file with the same content.
Robustness: random bytes and mutated valid files of both versions (bytes changed anywhere; v1
JSON fields and v2 binary fields forged: huge counts, flags, lengths that disagree with the bytes,
headers cut short), most with their checksum recomputed so that the parser must look past it,
give a CodecError and nothing else, quickly and in little memory.
A longer run of the same idea: scripts/fuzz_cdc.py (docs/fuzzing.md).
"""

from __future__ import annotations

import json
import math
import struct
import time
import tracemalloc
from dataclasses import replace
from datetime import timedelta

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.audio.bitstream import (
    MAGIC, CdcHeader, decode_cdc, encode_cdc, header_overhead, pack_codes, unpack_codes,
)
from codec.audio.segments import SegmentGrid
from codec.errors import CodecError

from .cdc_forgery import (
    FIELDS, V2_FLAGS, V2_INTS, as_v1, fit_payload, header_v2, join, join_v2, split, split_v2, with_crc,
)

# Deterministic (derandomize) and fast enough for CI; each case must finish within a second.
FAST = settings(max_examples=150, deadline=timedelta(seconds=1), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SIZES = st.sampled_from([2, 3, 7, 64, 1000, 1024, 4096, 65536, 2**20 + 1, 2**32])
MODELS = st.sampled_from([(16000, 320), (24000, 320), (48000, 320), (44100, 512), (16000, 16)])  # rate, hop
ORIGINAL_RATES = st.sampled_from([8000, 16000, 22050, 44100, 44101, 48000])
FITTED_BYTES = 1 << 18  # payloads fitted to a forged header, at most
RAW_JSON = st.sampled_from([  # values json.dumps cannot write: spliced in as text
    "1" + "0" * 400, "-" + "1" * 400, "1e999", "-1e999", "1e-999", "5e-324", "1" + "0" * 5000,
    "[" * 3000 + "]" * 3000, "{" * 50, '"\\ud800"', "[" + "2," * 2000 + "2]",
])
V2_HOSTILE = st.one_of(  # raw integers for binary fields (pack_v2 cuts them to the field's width)
    st.integers(-(2**70), 2**70), st.integers(0, 2**16),
    st.sampled_from([0, 1, 2, 64, 65, 255, 1024, 1025, 2**16 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**40 + 1, 2**48,
                     2**48 + 1, 2**63, 2**64 - 1]),
)
HOSTILE = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 1, 2**31, 2**32, 2**48, 2**63, 2**64]),
    st.floats(), st.text(max_size=12), st.none(), st.booleans(),
    st.lists(st.integers(-3, 2**33), max_size=6),
    st.recursive(st.none() | st.integers(), lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8),
)


@st.composite
def headers(draw: st.DrawFn) -> CdcHeader:
    """A valid header, as the encoder writes it: one piece (causal) or a segment grid, maybe normalised."""
    sample_rate, hop = draw(MODELS)
    original_rate = draw(ORIGINAL_RATES)
    channels = draw(st.integers(1, 3))
    num_samples = draw(st.integers(1, 40 * hop * original_rate // sample_rate))  # up to ~40 frames
    model_samples = -(-num_samples * sample_rate // original_rate)  # torchaudio's resampled length
    header = CdcHeader(
        model=draw(st.text(max_size=16)), model_fingerprint=draw(st.text("0123456789abcdef", max_size=16)),
        sample_rate=sample_rate, frame_rate=sample_rate / hop, original_sample_rate=original_rate,
        channels=channels, num_samples=num_samples, num_frames=max(1, -(-model_samples // hop)),
        codebook_sizes=tuple(draw(st.lists(SIZES, min_size=1, max_size=6))))
    if not draw(st.booleans()):
        return header
    segment = draw(st.integers(hop, 4 * hop))
    grid = SegmentGrid(segment, draw(st.integers((segment + 1) // 2, segment)), model_samples)
    normalized = draw(st.booleans())
    count = channels * grid.num_segments if normalized else 0
    scales = draw(st.lists(st.floats(2.0**-100, 2.0**100, width=32), min_size=count, max_size=count))
    return replace(header, segment_samples=grid.segment, segment_stride=grid.stride, model_num_samples=model_samples,
                   num_frames=sum(grid.frames(hop)), normalized=normalized, scales=tuple(scales))


def _codes(header: CdcHeader, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (header.channels, header.num_frames)
    return torch.from_numpy(np.stack([rng.integers(0, k, size=shape) for k in header.codebook_sizes], axis=1))


def _forge(data: bytes, field: str, value: object, raw: str | None) -> bytes:
    """``data`` with one header field replaced (by JSON ``raw`` text if given), its checksum recomputed."""
    meta, rest = split(data)
    text = json.dumps({**meta, field: "@@" if raw is not None else value})
    return join(text.replace('"@@"', raw or ""), rest)


def _decodes_or_refuses(data: bytes) -> None:
    """decode_cdc raises one CodecError sentence naming the file, or gives what encode_cdc writes again."""
    try:
        header, codes = decode_cdc(data, source="Input file 'x.cdc'")
    except CodecError as e:
        assert str(e).startswith("Input file 'x.cdc' ") and "\n" not in str(e) and len(str(e)) < 400, str(e)
        return
    back, back_codes = decode_cdc(encode_cdc(header, codes))  # whatever is read can be written
    assert back == header and torch.equal(back_codes, codes)


# --- round trips ------------------------------------------------------------------------------
@FAST
@given(headers(), st.integers(0, 2**32 - 1))
def test_valid_files_round_trip(header: CdcHeader, seed: int) -> None:
    codes = _codes(header, seed)
    data = encode_cdc(header, codes)
    assert len(data) == header_overhead(header) + math.ceil(header.payload_bits / 8)
    raw, rest = split_v2(data)  # read by the layout in the docs, independently of bitstream.py
    assert replace(header_v2(raw), scales=header.scales) == header
    assert len(rest) == math.ceil(header.payload_bits / 8) + 4 * len(header.scales)
    back, out = decode_cdc(data)
    assert back == header and out.dtype == torch.int64 and torch.equal(out, codes)
    back, out = decode_cdc(as_v1(data))  # the same content in a version-1 file
    assert back == header and torch.equal(out, codes)


@FAST
@given(st.lists(st.integers(1, 32), min_size=1, max_size=8), st.integers(1, 3), st.integers(0, 60),
       st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits: list[int], channels: int, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, 1 << b, size=(channels, frames)) for b in bits], axis=1)
    data = pack_codes(codes, bits)
    assert len(data) == math.ceil(channels * frames * sum(bits) / 8)
    assert np.array_equal(unpack_codes(data, (channels, len(bits), frames), bits), codes)


@FAST
@given(st.integers(1, 300), st.data())
def test_grid_frames_in_closed_form(segment: int, data: st.DataObject) -> None:
    grid = SegmentGrid(segment, data.draw(st.integers(1, segment)), data.draw(st.integers(0, 3000)))
    hop = data.draw(st.integers(1, 64))
    assert grid.num_frames(hop) == sum(grid.frames(hop))


# --- robustness -------------------------------------------------------------------------------
@FAST
@given(st.binary(max_size=3000), st.sampled_from([None, 1, 2]))
def test_random_bytes_are_refused(noise: bytes, version: int | None) -> None:
    """Noise, and noise behind a valid prefix (of either version) and checksum."""
    if version == 1:
        noise = with_crc(MAGIC + b"\x01" + struct.pack(">I", min(len(noise), 1 << 16)) + noise)
    elif version == 2:
        noise = with_crc(MAGIC + b"\x02" + noise)
    _decodes_or_refuses(noise)


def _forge_v2(data: bytes, draw: st.DrawFn) -> bytes:
    """A version-2 file with binary header fields forged, its checksum recomputed (the payload fitted to
    the forged header half the time): huge counts, other flags (which move every field after them),
    lengths and counts that disagree with the bytes, names that are not UTF-8, headers cut short."""
    raw, rest = split_v2(data)
    kind = draw(st.sampled_from(["ints", "ints", "flags", "lengths", "floats", "names", "cut"]))
    if kind == "ints":
        for name in draw(st.lists(st.sampled_from(sorted(V2_INTS)), min_size=1, max_size=4)):
            raw[name] = draw(V2_HOSTILE)
    elif kind == "flags":
        raw["flags"] ^= draw(st.sampled_from([*V2_FLAGS.values(), 0x40, 0x80]) | st.integers(1, 255))
    elif kind == "lengths":  # a length or count that does not match what follows it
        name = draw(st.sampled_from(["fingerprint_length", "model_length", "n_q", "sizes"]))
        if name == "sizes":
            raw["sizes"] = draw(st.lists(V2_HOSTILE, max_size=8))
        else:
            actual = {"fingerprint_length": len(raw["fingerprint"]), "model_length": len(raw["model"]),
                      "n_q": raw["n_q"]}[name]
            raw[name] = max(0, actual + draw(st.integers(-3, 3) | st.sampled_from([255, 1024, 65535])))
    elif kind == "floats":
        raw["frame_rate"] = draw(st.floats())
    elif kind == "names":
        raw[draw(st.sampled_from(["fingerprint", "model"]))] = draw(st.binary(max_size=300))
    else:  # the header cut short at any byte, the checksum right
        forged = join_v2(raw, rest)
        return with_crc(forged[:draw(st.integers(5, len(forged) - len(rest) - 5))])
    forged = join_v2(raw, rest)
    return fit_payload(forged, FITTED_BYTES) if draw(st.booleans()) else forged


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = encode_cdc(header := draw(headers()), _codes(header, draw(st.integers(0, 2**32 - 1))))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "field", "field", "field", "drop",
                                 "v2", "v2", "v2"]))
    if kind == "v2":
        return _forge_v2(data, draw)
    if draw(st.booleans()):
        data = as_v1(data)  # bytes mutated in either version; JSON fields forged in version 1
    body = bytearray(data[:-4])
    at = draw(st.integers(0, len(body)))
    if kind == "flip":
        bit = draw(st.integers(0, 8 * len(body) - 1))
        body[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        del body[at:]
    elif kind == "insert":
        body[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        del body[at:at + draw(st.integers(1, 64))]
    elif kind == "drop":
        meta, rest = split(data)
        del meta[draw(st.sampled_from(sorted(meta)))]
        return join(json.dumps(meta), rest)
    else:
        raw = draw(st.none() | RAW_JSON)
        forged = _forge(data, draw(st.sampled_from(FIELDS)), draw(HOSTILE), raw)
        return fit_payload(forged, FITTED_BYTES) if draw(st.booleans()) else forged
    return with_crc(bytes(body)) if draw(st.booleans()) else bytes(body) + data[-4:]


@settings(FAST, max_examples=1000)
@given(mutated_files())
def test_mutated_files_are_refused_or_read(data: bytes) -> None:
    _decodes_or_refuses(data)


COUNTS = ["num_frames", "num_samples", "model_num_samples", "segment_samples", "segment_stride", "channels",
          "sample_rate", "original_sample_rate", "frame_rate"]


def _costs_little(data: bytes, damaged: bool) -> None:
    """Decoding ``data`` (its checksum damaged if asked) decodes or refuses within a second and 50 MB."""
    if damaged:
        data = data[:-1] + bytes([data[-1] ^ 1])
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _decodes_or_refuses(data)
    finally:
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 50e6, (elapsed, peak)


@settings(FAST, max_examples=150)
@given(headers().filter(lambda h: h.grid is not None), st.lists(st.tuples(
    st.sampled_from(COUNTS), st.integers(0, 2**64) | st.sampled_from([10**400, 1 << 40, 1 << 48]) | st.floats())),
    st.booleans())
def test_forged_counts_cost_little(header: CdcHeader, changes: list, damaged: bool) -> None:
    """Counts and rates forged with a valid checksum (or a damaged one): under a second and 50 MB."""
    data = encode_cdc(header, _codes(header, 0))
    meta, rest = split(data)
    data = fit_payload(join(json.dumps({**meta, **dict(changes)}), rest), FITTED_BYTES)
    _costs_little(data, damaged)


V2_COUNTS = ["num_frames", "num_samples", "model_num_samples", "segment_samples", "segment_stride", "channels",
             "sample_rate", "original_sample_rate", "n_q"]


@settings(FAST, max_examples=150)
@given(headers(), st.lists(st.tuples(st.sampled_from(V2_COUNTS), V2_HOSTILE)), st.integers(0, 255), st.booleans())
def test_forged_v2_counts_cost_little(header: CdcHeader, changes: list, flags: int, damaged: bool) -> None:
    """Binary counts forged (up to all ones of their width, flags toggled to widen or shift them) with
    a valid checksum, the payload fitted when they agree (or a damaged checksum): under a second and 50 MB."""
    raw, rest = split_v2(encode_cdc(header, _codes(header, 0)))
    raw.update(changes)
    raw["flags"] ^= flags & (V2_FLAGS["WIDE"] | V2_FLAGS["SEGMENTED"] | V2_FLAGS["ONE_SIZE"])
    data = fit_payload(join_v2(raw, rest), FITTED_BYTES)
    _costs_little(data, damaged)
