""".cdc format version 2 (bitstream.py, docs/cdc_format.md): a binary header instead of ~300-355
bytes of JSON, so that a 1-second clip's file is within 10% of the nominal bitrate at 6 kbps.

encode_cdc writes version 2 only; decode_cdc reads versions 1 and 2 into the same CdcHeader, and
the shipped version-1 file still decodes to the same codes and audio. Forged version-2 headers
(huge counts, truncated fields, bad checksums, lengths that disagree) give one error sentence.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio import bitstream, from_pretrained, model_fingerprint
from codec.audio.bitstream import (
    MAGIC, CdcHeader, cdc_layout, decode_cdc, encode_cdc, header_overhead, inspect_cdc, write_cdc,
)
from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio, read_audio
from codec.audio.segments import SegmentGrid
from codec.errors import CodecError

from .cdc_forgery import as_v1, join_v2, split_v2, with_crc
from .conftest import SAMPLES
from .test_cli import assert_clean_failure
from .test_segments import _non_causal

OLD_FILE = Path(__file__).parent / "data" / "arctic_slt_a0009_3kbps.cdc"  # version 1, `codec encode --bandwidth 3`
V1_MODEL, FINGERPRINT = "devspeech_16khz", "ae36e159f905d290"  # the first default model (OLD_FILE's)
runner = CliRunner()


def run(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def _default_header(n_q: int = 12, **changes) -> CdcHeader:
    """The header V1_MODEL writes for a 1-second clip at 16 kHz."""
    return dataclasses.replace(CdcHeader(
        model=V1_MODEL, model_fingerprint=FINGERPRINT, sample_rate=16000, frame_rate=50.0,
        original_sample_rate=16000, channels=1, num_samples=16000, num_frames=50, codebook_sizes=(1024,) * n_q),
        **changes)


def _codes(header: CdcHeader, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (header.channels, header.num_frames)
    return torch.from_numpy(np.stack([rng.integers(0, k, size=shape) for k in header.codebook_sizes], axis=1))


def _fields_only(header: CdcHeader) -> tuple[bytes, CdcHeader]:
    """A header's version-2 fields, and what the reader makes of them (no codes needed: any length)."""
    fields = bitstream._header_v2(header)
    back, end = bitstream._parse_v2(MAGIC + b"\x02" + fields + bytes(4))
    assert end == 5 + len(fields)
    return fields, back


# --- the layout, byte by byte -------------------------------------------------------------------
def test_a_header_byte_by_byte():
    """The documented layout (bitstream.py, docs/cdc_format.md) for V1_MODEL at 6 kbps."""
    header = _default_header()
    data = encode_cdc(header, _codes(header))
    expected = b"".join([
        b"CDCF", b"\x02",  # 0: magic, 4: version
        bytes([0b0000_1100]),  # 5: flags ONE_SIZE | HEX_ID
        b"\x01", struct.pack("<H", 12),  # 6: channels, 7: n_q
        struct.pack("<I", 16000), struct.pack("<I", 16000),  # 9: sample_rate, 13: original_sample_rate
        struct.pack("<f", 50.0),  # 17: frame_rate (float32 holds 50 exactly)
        struct.pack("<I", 16000), struct.pack("<I", 50),  # 21: num_samples, 25: num_frames
        struct.pack("<I", 1023),  # 29: the one codebook size, minus one
        b"\x08", bytes.fromhex(FINGERPRINT),  # 33: fingerprint length, 34: its 8 bytes
        b"\x0f", b"devspeech_16khz",  # 42: name length, 43: the name
    ])
    assert len(expected) == 58 and data[:58] == expected
    assert cdc_layout(header) == bitstream.CdcLayout(2, 58, 750, 0, 4) and header_overhead(header) == 62 < 64
    assert len(data) == 58 + 750 + 4 and struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert split_v2(data)[0] == {  # the independent reader of tests/cdc_forgery.py agrees
        "flags": 12, "channels": 1, "n_q": 12, "sample_rate": 16000, "original_sample_rate": 16000, "frame_rate": 50.0,
        "num_samples": 16000, "num_frames": 50, "sizes": [1023], "fingerprint": bytes.fromhex(FINGERPRINT),
        "model": b"devspeech_16khz"}


@pytest.mark.parametrize("case, changes, flags, size", [
    ("one piece", {}, 0x0C, 58),
    ("sizes that differ", {"codebook_sizes": (1024, 512, 2**32)}, 0x08, 58 - 4 + 12),
    ("a text fingerprint", {"model_fingerprint": "ABC"}, 0x04, 58 - 8 + 3),
    ("odd hex is text", {"model_fingerprint": "abc"}, 0x04, 58 - 8 + 3),
    ("no fingerprint", {"model_fingerprint": ""}, 0x0C, 58 - 8),
    ("a float64 frame rate", {"frame_rate": 16000 / 3, "num_frames": 5333}, 0x2C, 58 + 4),
    ("44.1 kHz in", {"original_sample_rate": 44100, "num_samples": 44100}, 0x0C, 58),
    ("a long file", {"num_samples": 2**33, "num_frames": 2**33 // 320}, 0x1C, 58 + 8),
    ("segmented", {"segment_samples": 16000, "segment_stride": 16000, "model_num_samples": 16000}, 0x0D, 58 + 12),
    ("segmented, normalised", {"segment_samples": 16000, "segment_stride": 16000, "model_num_samples": 16000,
                               "normalized": True, "scales": (0.5,)}, 0x0F, 58 + 12),
    ("segmented, long", {"segment_samples": 16000, "segment_stride": 15840, "model_num_samples": 2**33,
                         "num_samples": 2**33, "num_frames": SegmentGrid(16000, 15840, 2**33).num_frames(320)},
     0x1D, 58 + 8 + 24),
    ("a non-ASCII name", {"model": "modèle-ß"}, 0x0C, 58 - 15 + 10),
    ("an undecodable folder name", {"model": "x\udcff"}, 0x0C, 58 - 15 + 4),  # os.fsdecode(b"x\xff")
    ("2 channels, 32 levels", {"channels": 2, "codebook_sizes": (1024,) * 32}, 0x0C, 58),
])
def test_flags_and_sizes(case, changes, flags, size):
    header = _default_header(**changes)
    header.validate()
    fields, back = _fields_only(header)
    assert fields[0] == flags and 5 + len(fields) == size, case
    assert back == dataclasses.replace(header, scales=()), case


def test_names_longer_than_a_length_byte_are_refused():
    encode_cdc(h := _default_header(model="m" * 255), _codes(h))
    for changes in ({"model": "m" * 256}, {"model": "é" * 128}, {"model_fingerprint": "ab" * 256},
                    {"model_fingerprint": "z" * 256}):
        with pytest.raises(ValueError, match="more than the 255"):
            encode_cdc(h := _default_header(**changes), _codes(h))
    encode_cdc(h := _default_header(model_fingerprint="ab" * 255), _codes(h))  # 255 bytes as hex


# --- round trips --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v1_model():
    return from_pretrained(V1_MODEL)


@pytest.fixture(scope="module")
def one_second() -> Audio:
    audio = read_audio(SAMPLES / "arctic_awb_a0007.flac")
    assert audio.sample_rate == 16000
    return Audio(audio.samples[:, :16000], 16000)


@torch.inference_mode()
def test_round_trip_one_piece_model(v1_model, one_second):
    """A causal model (V1_MODEL): encode -> bytes -> decode gives the same header and codes at
    several n_q, in version 2 and in the version-1 file of the same content."""
    for n_q in (1, 2, 6, 12):
        encoded = encode_audio(v1_model, one_second, n_q)
        header = CdcHeader.for_encoded(encoded, V1_MODEL, model_fingerprint(v1_model))
        data = encode_cdc(header, encoded.codes)
        assert data[4] == 2 and header.grid is None and len(data) == 58 + math.ceil(500 * n_q / 8) + 4
        for version, blob in ((2, data), (1, as_v1(data))):
            back, codes = decode_cdc(blob)
            assert back == header and torch.equal(codes, encoded.codes), (n_q, version)


@torch.inference_mode()
def test_round_trip_segmented_model(speech):
    """A non-causal model codes RMS-normalised segments: the grid and the scales come back exactly."""
    model = _non_causal(segment_seconds=0.5, segment_overlap=0.1, normalize=True)
    audio = Audio(torch.from_numpy(speech[0][None, :21000]), 16000)
    for n_q in (1, 3, 4):
        encoded = encode_audio(model, audio, n_q)
        header = CdcHeader.for_encoded(encoded, "tiny-test", "0123456789abcdef")
        assert header.grid.num_segments == 3 and header.normalized and len(header.scales) == 3
        data = encode_cdc(header, encoded.codes)
        assert data[5] == bitstream.SEGMENTED | bitstream.NORMALIZED | bitstream.ONE_SIZE | bitstream.HEX_ID
        assert len(data) == header_overhead(header) + math.ceil(header.payload_bits / 8)
        for blob in (data, as_v1(data)):
            back, codes = decode_cdc(blob)
            assert back == header and torch.equal(codes, encoded.codes)
        expected = decode_audio(model, encoded).samples
        assert torch.equal(decode_audio(model, back.encoded(codes)).samples, expected)


# --- version 1 still decodes ----------------------------------------------------------------------
@torch.inference_mode()
def test_the_version_1_file_decodes_as_before(v1_model):
    """The shipped version-1 file: the codes of encoding its clip today, and the same audio as the
    version-2 file holding the same codes; its JSON header is what as_v1 writes (v1 is unchanged)."""
    old = OLD_FILE.read_bytes()
    assert old[4] == 1
    header, codes = decode_cdc(old)
    encoded = encode_audio(v1_model, read_audio(SAMPLES / "arctic_slt_a0009.flac"), 6)
    assert torch.equal(codes, encoded.codes)
    assert header == CdcHeader.for_encoded(encoded, V1_MODEL, model_fingerprint(v1_model))
    new = encode_cdc(header, codes)
    assert as_v1(new) == old  # the same fields, the same codes, byte for byte
    assert len(new) == len(old) - 321 + 58
    audio = decode_audio(v1_model, header.encoded(codes)).samples
    back, back_codes = decode_cdc(new)
    assert torch.equal(decode_audio(v1_model, back.encoded(back_codes)).samples, audio)
    assert torch.equal(audio, decode_audio(v1_model, encoded).samples)


# --- the bitrate claim and `codec info` ------------------------------------------------------------
def _info(path: Path) -> dict[str, str]:
    result = run("info", path)
    assert result.exit_code == 0, result.output
    return dict(re.match(r"([a-z ]+):\s+(.*)", line).groups() for line in result.stdout.splitlines())


def _kbps(row: str) -> float:
    return float(row.split(" kbps")[0])


def test_a_one_second_clip_is_within_10_percent_of_the_nominal_bitrate(tmp_path, one_second):
    """Measured with `codec encode` and `codec info` on 1 s of speech and the default model.

    At 6 kbps: 750 bytes of codes + 65 (61 header with the 18-character name, 4 CRC) = 815 bytes,
    6.520 kbps, +8.7% (version 1: 1107 bytes, 8.856 kbps, +47.6%). At the lowest bandwidth, 0.5 kbps,
    the codes are 63 bytes and no header gets within 10%: that allows 6.25 bytes, less than the magic
    and the CRC alone; version 2 makes it 128 bytes, 1.024 kbps (+105%), version 1 365 bytes, 2.920
    kbps (+484%).
    """
    wav = tmp_path / "one_second.wav"
    sf.write(wav, one_second.samples[0].numpy(), 16000)
    measured = {}
    for kbps, size, v1_size in ((6, 815, 1107), (0.5, 128, 365)):
        cdc = tmp_path / f"{kbps}.cdc"
        result = run("encode", wav, "-o", cdc, "--bandwidth", kbps)
        assert result.exit_code == 0, result.output
        info = _info(cdc)
        assert info["format"] == ".cdc version 2 (binary header)" and info["header"].startswith("61 bytes,")
        nominal, actual = _kbps(info["nominal bitrate"]), _kbps(info["actual bitrate"])
        assert nominal == kbps and cdc.stat().st_size == size and actual == pytest.approx(size * 8 / 1000)
        v1 = tmp_path / f"{kbps}-v1.cdc"
        v1.write_bytes(as_v1(cdc.read_bytes()))
        assert v1.stat().st_size == v1_size and _info(v1)["format"] == ".cdc version 1 (JSON header)"
        measured[kbps] = actual / nominal, _kbps(_info(v1)["actual bitrate"]) / nominal
    assert measured[6][0] < 1.10 < 1.4 < measured[6][1]
    assert measured[0.5][0] == pytest.approx(2.048) and measured[0.5][1] > 5


def test_info_shows_the_version_the_header_size_and_both_bitrates(tmp_path):
    header = _default_header(n_q=6, original_sample_rate=44100, num_samples=44100)
    write_cdc(tmp_path / "a.cdc", header, _codes(header))
    info = _info(tmp_path / "a.cdc")
    assert info["format"] == ".cdc version 2 (binary header)"
    assert info["header"] == "58 bytes, then 375 bytes of codes and a 4-byte checksum"
    assert info["nominal bitrate"] == "3.000 kbps per channel"
    assert info["actual bitrate"] == "3.496 kbps (437 bytes in 1.000 s: +16.5% on the nominal)"
    old = _info(OLD_FILE)
    assert old["format"] == ".cdc version 1 (JSON header)"
    assert old["header"] == "321 bytes, then 1163 bytes of codes and a 4-byte checksum"
    assert old["nominal bitrate"] == "3.000 kbps per channel"
    assert old["actual bitrate"] == "3.846 kbps (1488 bytes in 3.095 s: +28.2% on the nominal)"
    stereo = dataclasses.replace(header, channels=2, segment_samples=16000, segment_stride=16000,
                                 model_num_samples=16000, normalized=True, scales=(0.5, 0.25))
    write_cdc(tmp_path / "s.cdc", stereo, _codes(stereo))
    info = _info(tmp_path / "s.cdc")
    assert info["header"] == "70 bytes, then 750 bytes of codes, 8 of scales and a 4-byte checksum"
    assert info["actual bitrate"] == "6.656 kbps (832 bytes in 1.000 s: +10.9% on the nominal 6.000 kbps of 2 channels)"
    assert inspect_cdc(tmp_path / "s.cdc")[1] == bitstream.CdcLayout(2, 70, 750, 8)


# --- forged version-2 headers ---------------------------------------------------------------------
def _forged(**changes) -> bytes:
    """V1_MODEL's 1-second file with raw version-2 fields changed, its checksum right."""
    header = _default_header(n_q=2)
    raw, rest = split_v2(encode_cdc(header, _codes(header)))
    return join_v2({**raw, **changes}, rest)


VALID = _forged()


def _flagged(flags: int) -> bytes:
    """VALID with other flags and nothing else changed: the fields after them are read otherwise."""
    return with_crc(VALID[:5] + bytes([flags]) + VALID[6:-4])

FORGED: dict[str, tuple[bytes, str]] = {
    "bad checksum": (VALID[:-1] + bytes([VALID[-1] ^ 1]), "corrupted (checksum mismatch)"),
    "a flipped header bit": (VALID[:30] + bytes([VALID[30] ^ 2]) + VALID[31:], "checksum mismatch"),
    "a count flipped up": (VALID[:25] + b"\x34" + VALID[26:], "is truncated (187 bytes, but its header implies 192)"),
    "cut inside the header": (with_crc(VALID[:40]), "is truncated (44 bytes, but its header implies at least 46)"),
    "cut after the prefix": (with_crc(VALID[:5]), "is truncated (9 bytes, but its header implies at least 21)"),
    "cut inside the codes": (with_crc(VALID[:-20]), "is truncated"),
    "bytes after the codes": (with_crc(VALID[:-4] + b"\0"), "1 unexpected bytes after its payload"),
    "reserved flag": (_forged(flags=0x4C), "reserved bits (0x40)"),
    "65535 levels": (_forged(n_q=65535, flags=0x08), "codebook_sizes must be a list of 1..1024 sizes, got 65535"),
    "no levels": (_forged(n_q=0), "codebook_sizes must be a list of 1..1024 sizes, got 0"),
    "1025 levels of one size": (_forged(n_q=1025), "got 1025"),
    "huge num_frames": (_forged(num_frames=2**32 - 1), "num_frames (4294967295) does not match num_samples"),
    "huge wide num_frames": (_forged(flags=0x1C, num_frames=2**64 - 1), "num_frames must be an integer in"),
    "num_frames that fits, not the samples": (_forged(flags=0x1C, num_frames=2**40), "does not match num_samples"),
    "huge num_samples": (_forged(num_samples=2**32 - 1), "does not match num_samples"),
    "255 channels": (_forged(channels=255), "channels must be an integer in [1, 64], got 255"),
    "no sample rate": (_forged(sample_rate=0), "sample_rate must be an integer"),
    "codebook of one": (_forged(sizes=[0]), "codebook sizes must be integers in [2, 2**32]"),
    "NaN frame rate": (_forged(frame_rate=float("nan")), "frame_rate must be a number"),
    # other flags move every field after them: here each time a name's length byte points past the file
    "float64 flag on a float32": (_flagged(0x2C), "is truncated (187 bytes, but its header implies at least 320)"),
    "wide flag on narrow lengths": (_flagged(0x1C), "is truncated (187 bytes, but its header implies at least 190)"),
    "segmented flag without the grid": (_flagged(0x0D), "implies at least 249"),
    "normalised, not segmented": (_flagged(0x0E), "the segment grid (0, 0, 0)"),
    "one size flag off: n_q sizes read": (_flagged(0x08), "implies at least 320"),
    "text fingerprint flag on hex bytes": (_flagged(0x04), "model_fingerprint is not UTF-8"),
    "name length past the header": (_forged(model_length=255), "is truncated"),
    "name length short": (_forged(model_length=3), "unexpected bytes after its payload"),
    "fingerprint length past the header": (_forged(fingerprint_length=200), "is truncated"),
    "fingerprint length short": (_forged(fingerprint_length=7), "implies at least 190"),
    "name not UTF-8": (_forged(model=b"\xff\xfe"), "model is not UTF-8 text (byte 0 of 2)"),
    "text fingerprint not UTF-8": (_forged(flags=0x04, fingerprint=b"\xc3"), "model_fingerprint is not UTF-8"),
}


@pytest.mark.parametrize("case", FORGED)
def test_forged_v2_headers_are_one_sentence(tmp_path, case):
    """Each forgery: one CodecError sentence naming the file, in well under a second and 50 MB."""
    data, message = FORGED[case]
    path = tmp_path / "x.cdc"
    path.write_bytes(data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CodecError) as info:
            decode_cdc(data, source=f"Input file '{path}'")
    finally:
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    text = str(info.value)
    assert text.startswith(f"Input file '{path}' ") and "\n" not in text and len(text) < 300, text
    assert message in text, text
    assert elapsed < 0.5 and peak < 5e6, (elapsed, peak)


@pytest.mark.parametrize("case", ["bad checksum", "cut inside the header", "65535 levels", "huge wide num_frames",
                                  "name length past the header", "name not UTF-8"])
def test_forged_v2_files_through_the_command_line(tmp_path, case):
    data, message = FORGED[case]
    src, out = tmp_path / "in.cdc", tmp_path / "out.wav"
    src.write_bytes(data)
    for result in (run("decode", src, "-o", out), run("info", src)):
        assert_clean_failure(result, out)
        assert result.exit_code == 1 and message in " ".join(result.stderr.split()), result.stderr


def test_the_valid_forgery_base_decodes():
    assert decode_cdc(VALID)[0] == _default_header(n_q=2)
