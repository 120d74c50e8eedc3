"""The .cdc file format (codec/audio/bitstream.py): packing, round trips, damaged files."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio.bitstream import (
    CdcHeader, decode_cdc, encode_cdc, header_overhead, pack_codes, read_cdc, unpack_codes, write_cdc,
)
from codec.audio.segments import SegmentGrid
from codec.errors import CodecError
from codec.tokens import TokenSpec

SIZES = [2, 3, 1000, 1024, 2048, 4096, 65536]


def _header(channels: int = 1, sizes: tuple[int, ...] = (1024, 1024), frames: int = 10) -> CdcHeader:
    return CdcHeader(model="tiny-16k", model_fingerprint="ab" * 16, sample_rate=16000, frame_rate=50.0,
                     original_sample_rate=44100, channels=channels, num_samples=frames * 882,
                     num_frames=frames, codebook_sizes=sizes)


def _codes(rng: np.random.Generator, header: CdcHeader) -> torch.Tensor:
    shape = (header.channels, header.num_frames)
    return torch.from_numpy(np.stack([rng.integers(0, k, size=shape) for k in header.codebook_sizes], axis=1))


def _raw_file(meta: dict | bytes, payload: bytes = b"", version: int = 1) -> bytes:
    """A .cdc file with an arbitrary header and a valid checksum (a crafted, not damaged, file)."""
    blob = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    body = b"CDCF" + bytes([version]) + struct.pack(">I", len(blob)) + blob + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _fields(header: CdcHeader) -> dict:
    """The JSON fields of ``header``, to forge variants of it."""
    return {k: v for k, v in dataclasses.asdict(header).items() if k != "scales"} | {
        "codebook_sizes": list(header.codebook_sizes)}


@contextmanager
def _cheap(seconds: float = 1.0, megabytes: float = 50.0) -> Iterator[None]:
    """Assert that the block runs within ``seconds`` and allocates at most ``megabytes`` at its peak."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds and peak < megabytes * 1e6, f"{elapsed:.2f} s, {peak / 1e6:.1f} MB"


def _cdc_error(data: bytes, tmp_path: Path, name: str = "x.cdc") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CodecError) as info:
        read_cdc(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_pack_known_bits() -> None:
    codes = np.array([[[5, 1], [0, 3]]])  # [C=1, Q=2, F=2], bits (3, 2)
    # frame 0: 101 00, frame 1: 001 11 -> 1010 0001 11(00 0000)
    assert pack_codes(codes, [3, 2]) == bytes([0b10100001, 0b11000000])
    assert np.array_equal(unpack_codes(bytes([0b10100001, 0b11000000]), (1, 2, 2), [3, 2]), codes)


def test_pack_unpack_random_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        c, q, f = int(rng.integers(1, 7)), int(rng.integers(1, 33)), int(rng.integers(0, 201))
        bits = [int(b) for b in rng.integers(1, 17, size=q)]
        codes = np.stack([rng.integers(0, 1 << b, size=(c, f)) for b in bits], axis=1)
        data = pack_codes(codes, bits)
        assert len(data) == math.ceil(c * f * sum(bits) / 8)
        out = unpack_codes(data, (c, q, f), bits)
        assert out.dtype == np.int64 and np.array_equal(out, codes)


def test_pack_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        pack_codes(np.array([[[4]]]), [2])
    with pytest.raises(ValueError):
        pack_codes(np.array([[[-1]]]), [2])
    with pytest.raises(ValueError):
        pack_codes(np.zeros((1, 2, 3), np.int64), [2])
    with pytest.raises(ValueError):
        unpack_codes(b"\x00", (1, 1, 3), [4])


def test_cdc_round_trip_random(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(40):
        q = int(rng.integers(1, 33))
        sizes = tuple(int(k) for k in rng.choice(SIZES, size=q))
        header = _header(int(rng.integers(1, 7)), sizes, int(rng.integers(1, 201)))
        codes = _codes(rng, header)
        data = encode_cdc(header, codes)
        assert len(data) == header_overhead(header) + math.ceil(header.payload_bits / 8)
        back, out = decode_cdc(data)
        assert back == header and out.dtype == torch.int64 and torch.equal(out, codes)
        if i % 10 == 0:
            write_cdc(tmp_path / f"{i}.cdc", header, codes)
            back, out = read_cdc(tmp_path / f"{i}.cdc")
            assert back == header and torch.equal(out, codes)
            assert (tmp_path / f"{i}.cdc").stat().st_size == len(data)


def test_header_properties() -> None:
    h = _header(channels=2, sizes=(1024, 1000, 3, 65536), frames=75)
    assert h.n_q == 4 and h.codebook_bits == (10, 10, 2, 16)
    assert h.payload_bits == 2 * 75 * 38
    assert h.nominal_bitrate == pytest.approx(50.0 * 38)
    assert h.duration == pytest.approx(75 * 882 / 44100)
    assert h.actual_bitrate(1000) == pytest.approx(8000 / h.duration)
    assert _header(sizes=(2,)).codebook_bits == (1,)


def test_encode_rejects_bad_input() -> None:
    header = _header()
    with pytest.raises(ValueError, match="shape"):
        encode_cdc(header, torch.zeros(1, 3, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="codebook"):
        encode_cdc(_header(sizes=(1000,)), torch.full((1, 1, 10), 1000))
    with pytest.raises(ValueError, match="num_frames"):
        encode_cdc(dataclasses.replace(_header(), num_frames=0), torch.zeros(1, 2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="codebook sizes"):
        encode_cdc(_header(sizes=(1,)), torch.zeros(1, 1, 10, dtype=torch.long))


def test_write_refuses_overwrite(tmp_path: Path) -> None:
    header = _header()
    codes = _codes(np.random.default_rng(2), header)
    write_cdc(tmp_path / "a.cdc", header, codes)
    with pytest.raises(CodecError, match="already exists"):
        write_cdc(tmp_path / "a.cdc", header, codes)
    write_cdc(tmp_path / "a.cdc", header, codes, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.cdc"]


def test_truncation_anywhere_is_detected(tmp_path: Path) -> None:
    header = _header(channels=2, sizes=(1024, 4096, 3), frames=60)
    data = encode_cdc(header, _codes(np.random.default_rng(3), header))
    for cut in range(0, len(data), 10):
        msg = _cdc_error(data[:cut], tmp_path)
        assert any(w in msg for w in ("empty", "truncated", "corrupted")), msg
    assert "truncated" in _cdc_error(data[:-1], tmp_path)


def test_every_bit_flip_is_detected(tmp_path: Path) -> None:
    header = _header(sizes=(1024, 3), frames=4)
    data = encode_cdc(header, _codes(np.random.default_rng(4), header))
    assert len(data) < 400
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(CodecError) as info:
            decode_cdc(bytes(bad), source="Input file 'x.cdc'")
        assert "x.cdc" in str(info.value)
    tail = bytearray(data)
    tail[-8] ^= 0x10  # inside the payload
    assert "checksum mismatch" in _cdc_error(bytes(tail), tmp_path)


def test_foreign_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    assert "is not a .cdc file" in _cdc_error((tmp_path / "a.wav").read_bytes(), tmp_path)
    assert "is not a .cdc file" in _cdc_error(np.random.default_rng(5).bytes(300), tmp_path)
    assert "is empty" in _cdc_error(b"", tmp_path)
    assert "truncated" in _cdc_error(b"CD", tmp_path)
    with pytest.raises(CodecError, match="does not exist"):
        read_cdc(tmp_path / "missing.cdc")
    with pytest.raises(CodecError, match="directory"):
        read_cdc(tmp_path)


def test_crafted_headers(tmp_path: Path) -> None:
    header = _header(sizes=(1000,), frames=4)
    good = {k: v for k, v in dataclasses.asdict(header).items() if k != "scales"} | {"codebook_sizes": [1000]}
    payload = pack_codes(np.full((1, 1, 4), 1023), [10])  # codes above K=1000
    assert "exceeds its codebook size" in _cdc_error(_raw_file(good, payload), tmp_path)
    assert "version 9" in _cdc_error(_raw_file(good, payload, version=9), tmp_path)  # an unknown version
    ok_payload = pack_codes(np.zeros((1, 1, 4), np.int64), [10])
    assert decode_cdc(_raw_file(good, ok_payload))[0] == header
    assert "truncated" in _cdc_error(_raw_file(good, ok_payload[:-1]), tmp_path)
    assert "truncated" in _cdc_error(_raw_file(good, ok_payload)[:-1], tmp_path)
    assert "unexpected bytes" in _cdc_error(_raw_file(good, ok_payload + b"\0"), tmp_path)
    bad_headers = [
        b"{not json", b"\xff\xfe", b"[1, 2]", json.dumps({**good, "extra": 1}).encode(),
        *(json.dumps({**good, key: value}).encode() for key, value in [
            ("channels", 0), ("channels", True), ("channels", 10**9), ("sample_rate", -16000),
            ("num_frames", 2**60), ("num_samples", 10**12), ("frame_rate", "50"),
            ("codebook_sizes", []), ("codebook_sizes", [1]), ("codebook_sizes", [2**40]),
            ("codebook_sizes", 1024), ("model", None), ("normalized", 1), ("segment_samples", -5),
            ("segment_samples", 640),  # a segment grid without stride and length
        ]),
        json.dumps({**good, "segment_samples": 640, "segment_stride": 320, "model_num_samples": 4000}).encode(),  # 19 frames, not 4
        json.dumps(good).replace("50.0", "NaN").encode(),
    ]
    for blob in bad_headers:
        assert "invalid header" in _cdc_error(_raw_file(blob, ok_payload), tmp_path), blob
    old = {k: v for k, v in good.items() if k not in ("segment_samples", "segment_stride", "model_num_samples",
                                                       "normalized")}
    assert decode_cdc(_raw_file(old, ok_payload))[0] == header  # files written before segmented coding


def test_segmented_file_with_scales(tmp_path: Path) -> None:
    """Two segments x 2 channels: the float32 scales follow the codes and come back exactly."""
    base = _header(sizes=(1024, 1024), frames=4)
    header = dataclasses.replace(base, channels=2, segment_samples=960, segment_stride=640, model_num_samples=960,
                                 num_samples=2646,  # 960 samples at 16 kHz are 2646 at 44.1 kHz
                                 normalized=True, scales=(0.5, 0.25, 1e-8 + 0.125, 3.0))
    header = dataclasses.replace(header, scales=tuple(float(np.float32(v)) for v in header.scales))
    assert header.num_scales == 4 and header.grid.frames(320) == [3, 1]
    codes = _codes(np.random.default_rng(8), header)
    data = encode_cdc(header, codes)
    back, out = decode_cdc(data)
    assert back == header and torch.equal(out, codes)
    assert len(data) == header_overhead(header) + math.ceil(header.payload_bits / 8)
    assert "truncated" in _cdc_error(data[:-6] + struct.pack(">I", zlib.crc32(data[:-6])), tmp_path)
    assert "truncated" in _cdc_error(data[:-6], tmp_path)
    for bad in [header.scales[:3], (0.0, 1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0, 1.0)]:
        with pytest.raises(ValueError, match="scales"):
            encode_cdc(dataclasses.replace(header, scales=bad), codes)
    nan = bytearray(data)
    nan[-8:-4] = struct.pack(">f", float("nan"))
    nan[-4:] = struct.pack(">I", zlib.crc32(bytes(nan[:-4])))
    assert "invalid header" in _cdc_error(bytes(nan), tmp_path)
    huge = b"CDCF\x01" + struct.pack(">I", 2**31) + b"{}"
    assert "header" in _cdc_error(huge + struct.pack(">I", zlib.crc32(huge)), tmp_path)


# --- forged files: a valid checksum, so only the header checks stand between them and the model ---
GOOD = _fields(_header(sizes=(1000,), frames=4))
GOOD_PAYLOAD = pack_codes(np.zeros((1, 1, 4), np.int64), [10])
HUGE = "1" + "0" * 400


@pytest.mark.parametrize("field, value", [
    ("frame_rate", HUGE), ("frame_rate", "1e999"), ("frame_rate", "-" + HUGE), ("frame_rate", "5e-324"),
    ("sample_rate", "1e999"), ("sample_rate", HUGE), ("original_sample_rate", HUGE), ("num_frames", HUGE),
    ("num_samples", "-" + HUGE), ("channels", HUGE), ("codebook_sizes", f"[{HUGE}]"), ("segment_samples", HUGE),
    ("model_num_samples", "1e999"), ("normalized", HUGE),
])
def test_huge_numbers_are_an_invalid_header(tmp_path: Path, field: str, value: str) -> None:
    """JSON has no limits: 10**400 parses to an int and 1e999 to inf; both are one short sentence."""
    text = json.dumps({**GOOD, field: "__X__"}).replace('"__X__"', value)
    msg = _cdc_error(_raw_file(text.encode(), GOOD_PAYLOAD), tmp_path)
    assert "invalid header" in msg and len(msg) < 300, msg


def test_a_forged_segment_grid_is_rejected_at_once(tmp_path: Path) -> None:
    """Millions of segments over a few kB: once listed before the checksum (tens of seconds, GBs)."""
    stride_1 = {**GOOD, "segment_samples": 640, "segment_stride": 1, "model_num_samples": 1 << 22,
                "num_samples": 1 << 22}
    valid_grid = {**GOOD, "segment_samples": 640, "segment_stride": 320, "model_num_samples": 1 << 30,
                  "num_samples": 1 << 30, "original_sample_rate": 16000,
                  "num_frames": SegmentGrid(640, 320, 1 << 30).num_frames(320)}  # its frames, but not their codes
    for forged, message in [(stride_1, "invalid header"), (valid_grid, "truncated")]:
        data = _raw_file(forged, bytes(9000))
        damaged = data[:100] + bytes([data[100] ^ 1]) + data[101:]  # inside the header
        with _cheap():
            assert message in _cdc_error(data, tmp_path)
            assert "checksum mismatch" in _cdc_error(damaged, tmp_path)


def test_the_checksum_is_checked_before_the_header(tmp_path: Path) -> None:
    forged = _raw_file({**GOOD, "channels": "many"}, GOOD_PAYLOAD)
    assert "invalid header" in _cdc_error(forged, tmp_path)
    assert "checksum mismatch" in _cdc_error(forged[:-1] + bytes([forged[-1] ^ 1]), tmp_path)


def test_frames_must_match_the_samples(tmp_path: Path) -> None:
    """12.5 kB of 1-bit codes claiming 100 000 frames (33 min) for 20 ms once decoded for minutes."""
    many = {**GOOD, "num_samples": 882, "original_sample_rate": 44100, "num_frames": 100_000,
            "codebook_sizes": [2]}
    few = {**GOOD, "num_samples": 16000 * 3600, "original_sample_rate": 16000}  # an hour in 4 frames
    short_grid = {**GOOD, "segment_samples": 640, "segment_stride": 640, "model_num_samples": 1280,
                  "num_samples": 16000 * 3600, "original_sample_rate": 16000}  # 4 frames of a 1280-sample grid
    for forged, payload in [(many, bytes(12_500)), (few, GOOD_PAYLOAD), (short_grid, GOOD_PAYLOAD)]:
        with _cheap():
            assert "invalid header" in _cdc_error(_raw_file(forged, payload), tmp_path)


def _causal_frames(num_samples: int, original_rate: int, sample_rate: int, hop: int) -> int:
    """Frames a causal model codes: the input resampled (torchaudio: ceil), then ceil(T / hop), at least 1."""
    model_samples = -(-num_samples * sample_rate // original_rate)
    return max(1, -(-model_samples // hop))


def test_every_consistent_length_is_accepted() -> None:
    rng = np.random.default_rng(9)
    for sample_rate, hop in [(16000, 320), (24000, 320), (48000, 320), (44100, 512), (16000, 16), (16000, 1)]:
        for original_rate in (8000, 16000, 22050, 44100, 44101, 48000, 96000):
            for num_samples in (1, 2, 3, max(1, hop - 1), hop, hop + 1, *rng.integers(1, 10**6, size=5)):
                num_samples = int(num_samples)
                header = dataclasses.replace(
                    _header(), sample_rate=sample_rate, frame_rate=sample_rate / hop,
                    original_sample_rate=original_rate, num_samples=num_samples,
                    num_frames=_causal_frames(num_samples, original_rate, sample_rate, hop))
                header.validate()
                model_samples = -(-num_samples * sample_rate // original_rate)
                segment = max(hop, 2000)
                for stride in (segment, segment * 99 // 100, (segment + 1) // 2):
                    grid = SegmentGrid(segment, stride, model_samples)
                    dataclasses.replace(header, segment_samples=segment, segment_stride=stride,
                                        model_num_samples=model_samples,
                                        num_frames=sum(grid.frames(hop))).validate()


def _spec(sizes: tuple[int, ...] = (1024, 1024, 1024, 1024), frame_rate: float = 50.0,
          residual: bool = True) -> TokenSpec:
    return TokenSpec("audio", sizes, frame_rate, residual=residual)


def test_check_model() -> None:
    """A header that does not fit the decoding model is refused by name, before the model sees it."""
    header = _header(sizes=(1024, 1024))
    header.check_model(_spec(), 16000, 1)  # the first two of four codebooks: a lower bitrate
    header.check_model(_spec((1024, 1024)), 16000, 1)
    _header(channels=3).check_model(_spec(), 16000, 1)  # a mono model codes each channel as a stream
    stereo = dataclasses.replace(header, channels=1)
    stereo.check_model(_spec(), 16000, 2)
    for case, spec, sample_rate, channels, words in [
        ("more codebooks", _spec((1024,)), 16000, 1, "2 codebooks, but the model has 1"),
        ("other sizes", _spec((1024, 512, 1024)), 16000, 1, "codebook sizes"),
        ("parallel levels", _spec(residual=False), 16000, 1, "parallel"),
        ("sample rate", _spec(), 24000, 1, "16000 Hz"),
        ("frame rate", _spec(frame_rate=75.0), 16000, 1, "frames per second"),
    ]:
        with pytest.raises(CodecError, match=words) as info:
            header.check_model(spec, sample_rate, channels, source="Input file 'x.cdc'")
        assert str(info.value).startswith("Input file 'x.cdc' ") and "\n" not in str(info.value), case
    with pytest.raises(CodecError, match="stream"):
        _header(channels=2).check_model(_spec(), 16000, 2)
