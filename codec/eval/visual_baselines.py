"""Classic image and video codecs (JPEG, WebP, H.264, VP9) as baselines at equal bits.

Images are [C, H, W] and videos [C, T, H, W] floats in [0, 1] with C = 1 (grey) or 3 (RGB);
they are rounded to 8 bits before coding, and reconstructions come back in the same layout.

Bits are what a user stores. For images ``bits`` is the whole file (headers included) and
``payload_bits`` the entropy-coded data only, so tables can show both:
- JPEG: the bytes of each scan's entropy-coded segment (from the end of the SOS header to the
  next marker other than a restart marker, EOI for the single scan Pillow writes); the SOI/EOI
  markers, JFIF header, quantisation and Huffman tables and the frame and scan headers are
  excluded.
- WebP: the data of the bitstream chunk (``VP8 `` or ``VP8L``); the RIFF header and chunk
  headers are excluded. (The VP8 frame header inside the chunk is counted as payload.)

Videos are coded as raw elementary streams, without a container: Annex-B H.264 (``.h264``),
with x264's informational SEI message (its settings string, ~0.6 kB) removed, and VP9 in IVF
(``.ivf``: a 32-byte file header and 12 bytes per frame). ``bits`` is that file's size. Frames
are coded as 8-bit 4:2:0 (``yuv420p``, ffmpeg's default RGB conversion), as these codecs are
deployed, so saturated colour edges lose some detail even at the highest rates. Odd sizes are
padded to even (repeating the last row/column; 4:2:0 needs even sizes) and the reconstruction
cropped back.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import CodecError
from .baselines import _run

JPEG_QUALITIES = (1, 95)  # Pillow advises against quality above 95 (larger files, no visible gain)
WEBP_QUALITIES = (0, 100)  # the whole libwebp range
WEBP_METHOD = 6  # slowest, best compression
VIDEO_ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9"}
VIDEO_CRF_RANGES = {"h264": (0, 51), "vp9": (0, 63)}
_VIDEO_FORMATS = {"h264": ("h264", ".h264"), "vp9": ("ivf", ".ivf")}  # (ffmpeg muxer, suffix)
_QUIET = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


@dataclass(frozen=True)
class CodedImage:
    """One image through a classic codec.

    reconstruction: [C, H, W] in [0, 1], the decoded file
    bits:           size of the whole file (what a user stores)
    payload_bits:   entropy-coded data only (see the module docstring)
    over_budget:    True when even the lowest quality exceeds the requested budget
                    (the result is then the lowest-quality file: the codec cannot reach that rate)
    """

    reconstruction: Tensor
    bits: int
    payload_bits: int
    quality: int
    codec: str  # "jpeg" or "webp"
    over_budget: bool = False


@dataclass(frozen=True)
class CodedVideo:
    """One video through a classic codec: reconstruction [C, T, H, W] in [0, 1]; ``bits`` is
    the produced stream's size and ``kbps_actual`` that size over the video's duration."""

    reconstruction: Tensor
    bits: int
    kbps_actual: float
    codec: str  # "h264" or "vp9"


# ---------------------------------------------------------------- images


def _to_pil(image: Tensor) -> Image.Image:
    """[C, H, W] in [0, 1] (C = 1 or 3) -> an 8-bit PIL image, mode L or RGB."""
    if image.dim() != 3 or image.shape[0] not in (1, 3) or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"Expected an image [C, H, W] with C = 1 or 3; got shape {tuple(image.shape)}.")
    pixels = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()  # [H, W, C]
    return Image.fromarray(array[..., 0], "L") if image.shape[0] == 1 else Image.fromarray(array, "RGB")


def _from_pil(image: Image.Image, channels: int) -> Tensor:
    """A decoded PIL image -> [channels, H, W] float in [0, 1]."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array.reshape(*array.shape[:2], channels)).permute(2, 0, 1).contiguous()


def jpeg_payload_bytes(data: bytes) -> int:
    """Bytes of entropy-coded data in a baseline or progressive JPEG file (every scan's segment
    from the end of its SOS header to the next non-restart marker)."""
    if data[:2] != b"\xff\xd8":
        raise CodecError("The data is not a JPEG file (no SOI marker).")
    pos, total = 2, 0
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise CodecError(f"The JPEG file has no marker where one is expected (byte {pos}).")
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            return total
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows its header
            start = pos
            pos = data.find(b"\xff", pos)
            while 0 <= pos < len(data) - 1 and (data[pos + 1] == 0x00 or 0xD0 <= data[pos + 1] <= 0xD7):
                pos = data.find(b"\xff", pos + 2)  # stuffed byte or restart marker: still data
            if pos < 0:
                break
            total += pos - start
    raise CodecError("The JPEG file ends without an EOI marker.")


def webp_payload_bytes(data: bytes) -> int:
    """Bytes of the bitstream chunk (VP8 or VP8L) of a WebP file, chunk headers excluded."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise CodecError("The data is not a WebP file (no RIFF/WEBP header).")
    pos, total = 12, 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos:pos + 4] in (b"VP8 ", b"VP8L"):
            total += size
        pos += 8 + size + size % 2  # chunks are padded to even sizes
    return total


def _code_image(image: Tensor, codec: str, quality: int) -> CodedImage:
    """Encode with Pillow at one quality, decode, and measure the file."""
    pil, buffer = _to_pil(image), io.BytesIO()
    if codec == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality, optimize=True)
    else:
        pil.save(buffer, format="WEBP", quality=quality, method=WEBP_METHOD, lossless=False)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        reconstruction = _from_pil(decoded, image.shape[0])
    payload = jpeg_payload_bytes(data) if codec == "jpeg" else webp_payload_bytes(data)
    return CodedImage(reconstruction, 8 * len(data), 8 * payload, quality, codec)


def _check_quality(quality: int, qualities: tuple[int, int], codec: str) -> None:
    low, high = qualities
    if not low <= quality <= high:
        raise ValueError(f"{codec.upper()} quality must be in {low}..{high}; got {quality}.")


def _at_bits(image: Tensor, target_bits: float, codec: str, qualities: tuple[int, int],
             include_headers: bool) -> CodedImage:
    """The highest quality whose file (or payload) fits ``target_bits`` (binary search; size
    grows with quality), or the lowest quality marked ``over_budget`` when none fits."""
    if not target_bits > 0:
        raise ValueError(f"target_bits must be positive; got {target_bits}.")

    def fits(coded: CodedImage) -> bool:
        return (coded.bits if include_headers else coded.payload_bits) <= target_bits

    low, high = qualities
    best = _code_image(image, codec, low)
    if not fits(best):
        return replace(best, over_budget=True)
    low += 1
    while low <= high:  # invariant: ``best`` fits, every quality above ``high`` does not
        middle = (low + high) // 2
        coded = _code_image(image, codec, middle)
        if fits(coded):
            best, low = coded, middle + 1
        else:
            high = middle - 1
    return best


def jpeg_at_quality(image: Tensor, quality: int) -> CodedImage:
    """Pillow JPEG (optimised Huffman tables, 4:2:0 chroma for RGB) at ``quality`` in 1..95:
    image [C, H, W] -> CodedImage."""
    _check_quality(quality, JPEG_QUALITIES, "jpeg")
    return _code_image(image, "jpeg", quality)


def webp_at_quality(image: Tensor, quality: int) -> CodedImage:
    """Pillow lossy WebP (method 6) at ``quality`` in 0..100: image [C, H, W] -> CodedImage.
    WebP has no grey mode: a grey image is coded as RGB and decoded back to one channel."""
    _check_quality(quality, WEBP_QUALITIES, "webp")
    return _code_image(image, "webp", quality)


def jpeg_at_bits(image: Tensor, target_bits: float, include_headers: bool = True) -> CodedImage:
    """The highest JPEG quality (1..95) whose whole file (``include_headers=False``: whose
    payload) is at most ``target_bits``: image [C, H, W] -> CodedImage."""
    return _at_bits(image, target_bits, "jpeg", JPEG_QUALITIES, include_headers)


def webp_at_bits(image: Tensor, target_bits: float, include_headers: bool = True) -> CodedImage:
    """The highest WebP quality (0..100) whose whole file (``include_headers=False``: whose
    payload) is at most ``target_bits``: image [C, H, W] -> CodedImage."""
    return _at_bits(image, target_bits, "webp", WEBP_QUALITIES, include_headers)


# ---------------------------------------------------------------- videos


@functools.lru_cache(maxsize=1)
def available_video_codecs() -> dict[str, bool]:
    """Codec name -> whether ffmpeg is on PATH with that codec's encoder."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return {codec: False for codec in VIDEO_ENCODERS}
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    encoders = {f[1] for f in (line.split() for line in out.splitlines()) if len(f) >= 2 and f[0].startswith("V")}
    return {codec: encoder in encoders for codec, encoder in VIDEO_ENCODERS.items()}


def _check_video(video: Tensor, fps: float, codec: str) -> None:
    if video.dim() != 4 or video.shape[0] not in (1, 3) or 0 in video.shape:
        raise ValueError(f"Expected a video [C, T, H, W] with C = 1 or 3; got shape {tuple(video.shape)}.")
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}.")
    if codec not in VIDEO_ENCODERS:
        raise ValueError(f"Unknown video codec '{codec}'; use one of {', '.join(VIDEO_ENCODERS)}.")


def _code_video(video: Tensor, fps: float, codec: str, rate_args: list[str], two_pass: bool) -> CodedVideo:
    """Write the 8-bit frames raw, encode them with ffmpeg (one or two passes), decode the
    stream back to raw frames and crop the even-size padding off."""
    c, t, h, w = video.shape
    frames = (video.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round()
    frames = F.pad(frames.transpose(0, 1), (0, w % 2, 0, h % 2), mode="replicate")  # [T, C, H', W']
    pixels = frames.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()  # [T, H', W', C]
    pix_fmt, (muxer, suffix) = ("gray" if c == 1 else "rgb24"), _VIDEO_FORMATS[codec]
    raw_input = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{w + w % 2}x{h + h % 2}", "-framerate", f"{fps:g}"]
    with tempfile.TemporaryDirectory(prefix="codec-baseline-") as tmp:
        src, coded, out = Path(tmp, "in.raw"), Path(tmp, "coded" + suffix), Path(tmp, "out.raw")
        pixels.tofile(src)
        encode = [*_QUIET, *raw_input, "-i", str(src), "-c:v", VIDEO_ENCODERS[codec], "-pix_fmt", "yuv420p",
                  *rate_args]
        if codec == "h264":
            encode += ["-bsf:v", "filter_units=remove_types=6"]  # drop SEI (x264's settings string)
        if two_pass:
            log = ["-passlogfile", str(Path(tmp, "pass"))]
            _run([*encode, *log, "-pass", "1", "-an", "-f", "null", "-"])
            encode += [*log, "-pass", "2"]
        _run([*encode, "-f", muxer, str(coded)])
        _run([*_QUIET, "-i", str(coded), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", pix_fmt,
              str(out)])
        decoded = np.fromfile(out, dtype=np.uint8)
        bits = 8 * coded.stat().st_size
    frame_size = pixels[0].size
    if decoded.size != t * frame_size:
        raise CodecError(f"ffmpeg decoded {decoded.size / frame_size:g} frames of a {t}-frame video.")
    decoded = torch.from_numpy(decoded.reshape(pixels.shape)).permute(3, 0, 1, 2)  # [C, T, H', W']
    reconstruction = decoded[..., :h, :w].to(torch.float32) / 255
    return CodedVideo(reconstruction.contiguous(), bits, bits / (t / fps) / 1000, codec)


def video_at_bitrate(video: Tensor, fps: float, kbps: float, codec: str = "h264") -> CodedVideo:
    """Code a video [C, T, H, W] at a target bitrate with two-pass rate control (libx264 or
    libvpx-vp9 with ``-b:v``). Encoders meet the target only approximately on short clips:
    read the size actually produced from ``bits`` / ``kbps_actual``."""
    _check_video(video, fps, codec)
    if not kbps > 0:
        raise ValueError(f"kbps must be positive; got {kbps}.")
    return _code_video(video, fps, codec, ["-b:v", f"{kbps * 1000:.0f}"], two_pass=True)


def video_at_crf(video: Tensor, fps: float, crf: int, codec: str = "h264") -> CodedVideo:
    """Code a video [C, T, H, W] at a constant rate factor (one pass; lower is better:
    0..51 for H.264, 0..63 for VP9 in constant-quality mode), for quality-vs-bits curves."""
    _check_video(video, fps, codec)
    low, high = VIDEO_CRF_RANGES[codec]
    if not low <= crf <= high:
        raise ValueError(f"{codec} CRF must be in {low}..{high}; got {crf}.")
    rate_args = ["-crf", str(crf)] + (["-b:v", "0"] if codec == "vp9" else [])
    return _code_video(video, fps, codec, rate_args, two_pass=False)
