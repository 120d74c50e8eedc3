"""The ``.cdc`` file of image and video tokens: format version 3.

Same frame as the audio versions (codec/audio/bitstream.py): the magic b"CDCF", a version byte, a
binary header, the bit-packed codes and a CRC32 of everything before it. Header fields little-endian::

    offset  size     field
    0       4        magic b"CDCF"
    4       1        format version (uint8) = 3
    5       1        flags: bit 0 VIDEO (else an image), bit 1 RESIZED (the tokenizer codes a fixed size:
                     the decoded image is resized back to height x width; else padded and cropped)
    6       1        channels (uint8)
    7       2        n_q: codebook levels (uint16)
    9       4        height, 13  4  width: of the original image or frames (uint32)
    17      4        frames: of the original video (uint32; 1 for an image)
    21      4        fps (float32; 0 for an image)
    25      4        token frames T' (uint32; 1 for an image)
    29      2        grid height h, 31  2  grid width w (uint16)
    33      4 n_q    codebook sizes minus one (uint32 each)
    then    1 + F    fingerprint length and UTF-8 text; 1 + M  model name length and UTF-8 text
    H                packed codes [Q, T', h, w]: position-major (t, y, x), levels within a position,
                     ceil(log2 K_q) bits each, MSB first (``pack_codes`` of the audio format)
    H + P   4        CRC32 (zlib.crc32, big-endian) of all bytes before it

Reading checks, cheapest first: magic and version, checksum, each field against its limits, the
file length the header implies, and only then the codes; no count in a header drives an allocation
before it is checked against the bytes that are really there.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..audio.bitstream import MAGIC, pack_codes, unpack_codes
from ..errors import CodecError
from ..files import atomic_write, check_readable

if TYPE_CHECKING:  # telling the versions apart (`codec info`) needs no torch
    import torch

VERSION = 3
VIDEO, RESIZED = 1, 2
_FIXED = struct.Struct("<4sBBBHIIIfIHH")  # magic .. grid width
_CRC = struct.Struct(">I")
MAX_SIDE = 1 << 16  # pixels per side of an original image or frame
MAX_PIXELS = 1 << 28  # of all frames together
MAX_LEVELS = 64
MAX_CODE_BITS = 24


@dataclass(frozen=True)
class VisualHeader:
    """What a visual .cdc file says about its tokens and the image or video they code."""

    model: str
    model_fingerprint: str
    channels: int
    height: int
    width: int
    codebook_sizes: tuple[int, ...]
    grid: tuple[int, int]  # token grid of one (token) frame
    frames: int = 1  # original frames (1: an image)
    fps: float = 0.0  # original frames per second (0: an image)
    token_frames: int = 1
    video: bool = False
    resized: bool = False

    @property
    def n_q(self) -> int:
        return len(self.codebook_sizes)

    @property
    def code_bits(self) -> tuple[int, ...]:
        return tuple(max(1, (k - 1).bit_length()) for k in self.codebook_sizes)

    @property
    def positions(self) -> int:
        return self.token_frames * self.grid[0] * self.grid[1]

    @property
    def payload_bytes(self) -> int:
        return math.ceil(self.positions * sum(self.code_bits) / 8)

    @property
    def pixels(self) -> int:
        return self.frames * self.height * self.width

    @property
    def codes_shape(self) -> tuple[int, ...]:
        """[Q, h, w] for an image, [Q, T', h, w] for a video."""
        return (self.n_q, *((self.token_frames,) if self.video else ()), *self.grid)

    def validate(self) -> None:
        """ValueError naming the first field out of its limits or at odds with the others."""
        checks = [
            (1 <= self.channels <= 4, f"channels must be 1..4, got {self.channels}"),
            (1 <= self.n_q <= MAX_LEVELS, f"n_q must be 1..{MAX_LEVELS}, got {self.n_q}"),
            (all(2 <= k <= 1 << MAX_CODE_BITS for k in self.codebook_sizes),
             f"codebook sizes must be 2..2**{MAX_CODE_BITS}, got {self.codebook_sizes}"),
            (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE,
             f"height and width must be 1..{MAX_SIDE}, got {self.height}x{self.width}"),
            (all(1 <= g <= MAX_SIDE for g in self.grid), f"the token grid must be 1..{MAX_SIDE}, got {self.grid}"),
            (1 <= self.frames and 1 <= self.token_frames <= self.frames,
             f"frames ({self.frames}) and token frames ({self.token_frames}) must be positive, token frames <= frames"),
            (self.video or (self.frames == 1 and self.token_frames == 1 and self.fps == 0),
             "an image has one frame and no fps"),
            (not self.video or (math.isfinite(self.fps) and 0 < self.fps <= 1000),
             f"a video's fps must be in (0, 1000], got {self.fps}"),
            (self.pixels <= MAX_PIXELS, f"{self.pixels} pixels are more than the {MAX_PIXELS} a file may code"),
            (self.positions <= MAX_PIXELS, f"{self.positions} token positions are more than {MAX_PIXELS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _text(blob: bytes) -> bytes:
    if len(blob) > 255:
        raise ValueError(f"a name of {len(blob)} bytes is longer than the 255 a .cdc header holds")
    return bytes([len(blob)]) + blob


def encode_visual_cdc(header: VisualHeader, codes: torch.Tensor) -> bytes:
    """Header + codes ([Q, h, w] or [Q, T', h, w], each < its codebook size) -> .cdc bytes (version 3)."""
    header.validate()
    if tuple(codes.shape) != header.codes_shape:
        raise ValueError(f"codes shape {tuple(codes.shape)} does not match the header's {header.codes_shape}")
    flat = codes.detach().cpu().long().reshape(header.n_q, -1).numpy()  # [Q, positions]
    if ((flat < 0) | (flat >= np.array(header.codebook_sizes)[:, None])).any():
        raise ValueError("codes exceed their codebook sizes")
    fixed = _FIXED.pack(MAGIC, VERSION, VIDEO * header.video | RESIZED * header.resized, header.channels,
                        header.n_q, header.height, header.width, header.frames, header.fps, header.token_frames,
                        *header.grid)
    body = b"".join([fixed, struct.pack(f"<{header.n_q}I", *(k - 1 for k in header.codebook_sizes)),
                     _text(header.model_fingerprint.encode()), _text(header.model.encode("utf-8", "surrogatepass")),
                     pack_codes(flat[None], header.code_bits)])
    return body + _CRC.pack(zlib.crc32(body))


def header_bytes(header: VisualHeader) -> int:
    """Bytes of the file besides the packed codes (header and checksum)."""
    return (_FIXED.size + 4 * header.n_q + 2 + len(header.model_fingerprint.encode())
            + len(header.model.encode("utf-8", "surrogatepass")) + _CRC.size)


def decode_visual_cdc(data: bytes, source: str = "The .cdc data") -> tuple[VisualHeader, torch.Tensor]:
    """Parse version-3 .cdc bytes -> (header, codes int64 [Q, h, w] or [Q, T', h, w]); CodecError names ``source``."""
    def fail(what: str) -> CodecError:
        return CodecError(f"{source} {what}.")

    if data[:4] != MAGIC or len(data) < 5:
        raise fail("is not a .cdc file" if data[:4] != MAGIC[:len(data[:4])] or not data else "is truncated")
    if data[4] != VERSION:
        raise fail(f"uses .cdc format version {data[4]}, not the image/video version {VERSION}")
    if len(data) < _FIXED.size + _CRC.size:
        raise fail("is truncated")
    if zlib.crc32(data[:-_CRC.size]) != _CRC.unpack(data[-_CRC.size:])[0]:
        raise fail("is damaged (its checksum does not match)")
    (_, _, flags, channels, n_q, height, width, frames, fps, token_frames, grid_h, grid_w) = _FIXED.unpack_from(data)
    end = len(data) - _CRC.size
    offset = _FIXED.size
    try:
        if flags & ~(VIDEO | RESIZED) or not 1 <= n_q <= MAX_LEVELS:
            raise ValueError(f"unknown flags {flags}" if flags & ~(VIDEO | RESIZED) else f"n_q {n_q} is out of range")
        if offset + 4 * n_q > end:
            raise fail("is truncated")
        sizes = tuple(k + 1 for k in struct.unpack_from(f"<{n_q}I", data, offset))
        offset += 4 * n_q
        texts = []
        for _ in range(2):
            if offset >= end or offset + 1 + data[offset] > end:
                raise fail("is truncated")
            texts.append(bytes(data[offset + 1:offset + 1 + data[offset]]))
            offset += 1 + data[offset]
        header = VisualHeader(texts[1].decode("utf-8", "surrogatepass"), texts[0].decode(), channels, height, width,
                              sizes, (grid_h, grid_w), frames, float(fps), token_frames, bool(flags & VIDEO),
                              bool(flags & RESIZED))
        header.validate()
    except (ValueError, UnicodeDecodeError) as e:
        raise fail(f"has an invalid header ({e})") from None
    if end - offset != header.payload_bytes:
        raise fail(f"is truncated or padded ({end - offset} bytes of codes, but its header implies "
                   f"{header.payload_bytes})")
    flat = unpack_codes(memoryview(data)[offset:end], (1, n_q, header.positions), header.code_bits)[0]
    if (flat >= np.array(sizes)[:, None]).any():
        raise fail("is invalid (a code exceeds its codebook size)")
    import torch

    return header, torch.from_numpy(flat).reshape(header.codes_shape)


def write_visual_cdc(path: str | os.PathLike, header: VisualHeader, codes: torch.Tensor, force: bool = False) -> None:
    """Encode and write atomically (never a half-written file; no overwrite without ``force``)."""
    data = encode_visual_cdc(header, codes)
    with atomic_write(Path(path), force) as tmp:
        tmp.write_bytes(data)


def read_visual_cdc(path: str | os.PathLike) -> tuple[VisualHeader, torch.Tensor]:
    p = check_readable(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CodecError(f"Input file '{p}' cannot be read ({e.strerror or e}).") from None
    return decode_visual_cdc(data, f"Input file '{p}'")


def cdc_version(path: str | os.PathLike) -> int | None:
    """The format version byte of a .cdc file (None if it is not one): 1-2 audio, 3 images and video."""
    try:
        with open(path, "rb") as f:
            start = f.read(5)
    except OSError:
        return None  # reading it for real says why
    return start[4] if len(start) == 5 and start[:4] == MAGIC else None
