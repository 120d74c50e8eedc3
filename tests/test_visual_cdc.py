"""The .cdc file of image and video tokens (format version 3): round trips, sizes, and every defect a
forged or damaged file can have giving one clear error."""

import struct
import zlib

import pytest
import torch

from codec.errors import CodecError
from codec.image.bitstream import (VERSION, VisualHeader, cdc_version, decode_visual_cdc, encode_visual_cdc,
                                   header_bytes, read_visual_cdc, write_visual_cdc)


def image_header(**changes) -> VisualHeader:
    fields = dict(model="digits_conv", model_fingerprint="0123456789abcdef", channels=1, height=30, width=31,
                  codebook_sizes=(256, 256), grid=(8, 8), resized=False)
    return VisualHeader(**(fields | changes))


def video_header(**changes) -> VisualHeader:
    fields = dict(model="moving_digits", model_fingerprint="fedcba9876543210", channels=1, height=32, width=32,
                  codebook_sizes=(1000,), grid=(8, 8), frames=9, fps=8.0, token_frames=3, video=True)
    return VisualHeader(**(fields | changes))


def random_codes(header: VisualHeader, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randint(0, k, (1, *header.codes_shape[1:]), generator=g) for k in header.codebook_sizes]
    return torch.cat(levels)


def resign(data: bytes) -> bytes:
    """Recompute the checksum, as a forger would."""
    body = data[:-4]
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("make", [image_header, video_header])
def test_round_trip_is_exact_and_sized_as_documented(make):
    header = make()
    codes = random_codes(header)
    data = encode_visual_cdc(header, codes)
    decoded, back = decode_visual_cdc(data)
    assert decoded == header and torch.equal(back, codes)
    # header + packed codes + checksum: nothing else
    assert len(data) == header_bytes(header) + header.payload_bytes
    bits = sum(max(1, (k - 1).bit_length()) for k in header.codebook_sizes)
    assert header.payload_bytes == -(-header.positions * bits // 8)


def test_image_header_is_small():
    header = image_header()
    # 33 fixed bytes + 2 sizes + the two names: a 64-token image of 2 levels is 128 bytes of codes
    assert header_bytes(header) == 33 + 8 + 1 + 16 + 1 + len("digits_conv") + 4
    assert image_header(codebook_sizes=(256,)).payload_bytes == 64


def test_files_are_written_atomically_and_never_overwritten(tmp_path):
    header, path = image_header(), tmp_path / "x.cdc"
    write_visual_cdc(path, header, random_codes(header))
    assert cdc_version(path) == VERSION
    with pytest.raises(CodecError, match="exists"):
        write_visual_cdc(path, header, random_codes(header, 1))
    write_visual_cdc(path, header, random_codes(header, 1), force=True)
    assert torch.equal(read_visual_cdc(path)[1], random_codes(header, 1))
    assert cdc_version(tmp_path / "missing.cdc") is None


def test_codes_that_do_not_fit_are_refused_when_writing():
    header = image_header()
    with pytest.raises(ValueError, match="shape"):
        encode_visual_cdc(header, torch.zeros(2, 4, 4, dtype=torch.long))
    codes = random_codes(header)
    codes[0, 0, 0] = 256
    with pytest.raises(ValueError, match="codebook"):
        encode_visual_cdc(header, codes)


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"", "not a .cdc file"),
    (lambda d: b"RIFF" + d[4:], "not a .cdc file"),
    (lambda d: d[:3], "truncated"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "damaged"),
    (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "damaged"),
    (lambda d: resign(d[:-4] + b"\0"), "padded"),
    (lambda d: resign(d[:-6]), "truncated"),
])
def test_damaged_files_give_one_clear_error(damage, message):
    header = image_header()
    data = encode_visual_cdc(header, random_codes(header))
    with pytest.raises(CodecError, match=message):
        decode_visual_cdc(damage(data), "x.cdc")


def forged(header: VisualHeader, **fields) -> bytes:
    """A file for ``header`` whose fixed fields are then overwritten (offsets as documented) and re-signed."""
    data = bytearray(encode_visual_cdc(header, random_codes(header)))
    offsets = {"flags": ("B", 5), "channels": ("B", 6), "n_q": ("H", 7), "height": ("I", 9), "width": ("I", 13),
               "frames": ("I", 17), "fps": ("f", 21), "token_frames": ("I", 25), "grid_h": ("H", 29)}
    for name, value in fields.items():
        fmt, offset = offsets[name]
        struct.pack_into("<" + fmt, data, offset, value)
    return resign(bytes(data))


@pytest.mark.parametrize("fields, message", [
    (dict(flags=0x80), "unknown flags"),
    (dict(n_q=0), "n_q"),
    (dict(n_q=60000), "n_q"),
    (dict(n_q=40), "truncated"),  # sizes for 40 levels are not there
    (dict(channels=9), "channels"),
    (dict(height=0), "height"),
    (dict(height=1 << 20), "height"),
    (dict(frames=5), "an image has one frame"),
    (dict(grid_h=60000), "truncated or padded"),  # the payload a 60000-row grid needs is not there
])
def test_forged_image_headers_are_refused_before_any_allocation(fields, message):
    with pytest.raises(CodecError, match=message):
        decode_visual_cdc(forged(image_header(), **fields), "x.cdc")


@pytest.mark.parametrize("fields, message", [
    (dict(fps=float("nan")), "fps"),
    (dict(fps=0.0), "fps"),
    (dict(token_frames=10), "token frames"),
    (dict(frames=60000, height=60000, width=60000), "pixels"),
])
def test_forged_video_headers_are_refused(fields, message):
    with pytest.raises(CodecError, match=message):
        decode_visual_cdc(forged(video_header(), **fields), "x.cdc")


def test_a_code_beyond_its_codebook_is_refused():
    header = video_header(codebook_sizes=(1000,))
    data = bytearray(encode_visual_cdc(header, torch.zeros(header.codes_shape, dtype=torch.long)))
    start = len(data) - 4 - header.payload_bytes
    data[start:start + 2] = b"\xff\xff"  # the first 10-bit code becomes 1023
    with pytest.raises(CodecError, match="exceeds its codebook"):
        decode_visual_cdc(resign(bytes(data)), "x.cdc")
