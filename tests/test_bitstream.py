"""The .cdc file format (codec/audio/bitstream.py): packing, round trips, damaged files."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio.bitstream import (
    CdcHeader, decode_cdc, encode_cdc, header_overhead, pack_codes, read_cdc, unpack_codes, write_cdc,
)
from codec.errors import CodecError

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
    assert "version 2" in _cdc_error(_raw_file(good, payload, version=2), tmp_path)
    ok_payload = pack_codes(np.zeros((1, 1, 4), np.int64), [10])
    assert decode_cdc(_raw_file(good, ok_payload))[0] == header
    assert "truncated" in _cdc_error(_raw_file(good, ok_payload[:-1]), tmp_path)
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
                                 normalized=True, scales=(0.5, 0.25, 1e-8 + 0.125, 3.0))
    header = dataclasses.replace(header, scales=tuple(float(np.float32(v)) for v in header.scales))
    assert header.num_scales == 4 and header.grid.frames(320) == [3, 1]
    codes = _codes(np.random.default_rng(8), header)
    data = encode_cdc(header, codes)
    back, out = decode_cdc(data)
    assert back == header and torch.equal(out, codes)
    assert len(data) == header_overhead(header) + math.ceil(header.payload_bits / 8)
    assert "truncated" in _cdc_error(data[:-6] + struct.pack(">I", zlib.crc32(data[:-6])), tmp_path)
    for bad in [header.scales[:3], (0.0, 1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0, 1.0)]:
        with pytest.raises(ValueError, match="scales"):
            encode_cdc(dataclasses.replace(header, scales=bad), codes)
    nan = bytearray(data)
    nan[-8:-4] = struct.pack(">f", float("nan"))
    nan[-4:] = struct.pack(">I", zlib.crc32(bytes(nan[:-4])))
    assert "invalid header" in _cdc_error(bytes(nan), tmp_path)
    huge = b"CDCF\x01" + struct.pack(">I", 2**31) + b"{}"
    assert "header" in _cdc_error(huge + struct.pack(">I", zlib.crc32(huge)), tmp_path)
