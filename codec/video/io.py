"""Reading and writing videos as float tensors [C, T, H, W] in [0, 1], through ffmpeg.

``probe_video`` asks ffprobe for the first video stream (cover art of audio files does not
count) and validates what it says: positive sizes, at most ``MAX_SIDE`` pixels a side, at
least one frame (the header's count, or the demuxed packets where the container has none),
a positive frame rate. A stream whose display matrix turns it by 90 degrees is reported
with width and height swapped, as ffmpeg decodes it upright.

``read_video`` checks the size of the result against ``MAX_VIDEO_VALUES`` before decoding,
pipes raw frames (gray or rgb24) from ffmpeg, every decoded frame as it is stored (no
frame-rate conversion), and requires exactly the frames the header promised: a cut file, or
one ffmpeg fails on, is a ``CodecError``, never a shorter video. (Damaged bytes inside a
frame that the codec itself cannot detect, H.264 having no checksums, go unnoticed.)

``write_video`` writes .mp4 (H.264, yuv420p, CRF 18; odd sizes are padded to even ones by
repeating the last row / column) or .gif (one palette for the whole clip, no dithering; GIF
delays are whole centiseconds, so frame rates that are not 100 / n are rounded), atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.errors import CodecError
from codec.files import atomic_write, check_readable, check_writable

__all__ = ["MAX_SIDE", "MAX_VIDEO_VALUES", "VIDEO_SUFFIXES", "WRITABLE_VIDEO_SUFFIXES", "VideoInfo",
           "probe_video", "read_video", "write_video"]

MAX_SIDE = 16384  # pixels, width or height
MAX_VIDEO_VALUES = 1 << 29  # C x T x H x W of one decoded video: 2 GiB as float32
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
WRITABLE_VIDEO_SUFFIXES = frozenset({".mp4", ".gif"})


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream of a file: frame size (as decoded), number of frames, frames per second."""

    width: int
    height: int
    frames: int
    fps: float
    grey: bool  # a grey pixel format (read as 1 channel by default)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Validated facts about the first video stream of ``path``, from ffprobe (no decoding)."""
    return _probe(check_readable(path))[0]


def _probe(p: Path) -> tuple[VideoInfo, int]:
    """``probe_video`` and the index of the stream it describes."""
    stream = _video_stream(p)
    width, height = _positive_int(stream.get("width")), _positive_int(stream.get("height"))
    if width is None or height is None or width > MAX_SIDE or height > MAX_SIDE:
        raise CodecError(f"Video file '{p}' declares an invalid frame size "
                         f"({stream.get('width')} x {stream.get('height')}; at most {MAX_SIDE} a side).")
    if _quarter_turn(stream):
        width, height = height, width
    frames = _positive_int(stream.get("nb_frames")) or _count_packets(p, stream["index"])
    if frames is None:
        raise CodecError(f"Video file '{p}' has no frames in its video stream.")
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if fps is None:
        raise CodecError(f"Video file '{p}' declares no valid frame rate.")
    grey = str(stream.get("pix_fmt", "")).startswith(("gray", "ya"))
    return VideoInfo(width=width, height=height, frames=frames, fps=fps, grey=grey), stream["index"]


def read_video(path: str | os.PathLike, channels: int | None = None, max_frames: int | None = None,
               start: int = 0) -> tuple[torch.Tensor, float]:
    """Frames ``start`` .. ``start + max_frames`` (default: to the end) of ``path`` as float32
    [C, T, H, W] in [0, 1], and the frame rate; C = ``channels`` (1 or 3), by default 1 for a
    grey stream and 3 otherwise."""
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    p = check_readable(path)
    info, index = _probe(p)
    if start >= info.frames:
        raise CodecError(f"Video file '{p}' has {info.frames} frames; cannot start reading at frame {start}.")
    channels = channels or (1 if info.grey else 3)
    frames = info.frames - start if max_frames is None else min(max_frames, info.frames - start)
    frame_bytes = channels * info.height * info.width
    if frames * frame_bytes > MAX_VIDEO_VALUES:
        raise CodecError(f"Video file '{p}' is too large to read whole ({frames} frames of {info.width} x "
                         f"{info.height}); read fewer frames with max_frames.")
    trim = ["-vf", f"trim=start_frame={start},setpts=PTS-STARTPTS"] if start else []
    command = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(p), "-map", f"0:{index}",
               *trim, "-fps_mode", "passthrough", "-frames:v", str(frames), "-f", "rawvideo",
               "-pix_fmt", "gray" if channels == 1 else "rgb24", "-"]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise CodecError(f"Video file '{p}' is truncated or corrupt (ffmpeg: {_last_line(result.stderr, p)}).")
    decoded = len(result.stdout) // frame_bytes
    if decoded < frames:
        raise CodecError(f"Video file '{p}' is truncated or corrupt: decoded {decoded} of its "
                         f"{start + frames} frames.")
    pixels = np.frombuffer(result.stdout, np.uint8, count=frames * frame_bytes)
    video = torch.from_numpy(pixels.reshape(frames, info.height, info.width, channels).copy())
    return video.permute(3, 0, 1, 2).float().div_(255), info.fps


def write_video(path: str | os.PathLike, video: torch.Tensor, fps: float, force: bool = False) -> None:
    """Write [C, T, H, W] (C = 1 or 3, values clamped to [0, 1]) to an .mp4 or .gif ``path`` at ``fps``."""
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[0] not in (1, 3):
        raise ValueError(f"video must be a tensor [C, T, H, W] with C = 1 or 3, got "
                         f"{tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__}")
    if min(video.shape[1:]) == 0:
        raise ValueError(f"video must not be empty, got shape {tuple(video.shape)}")
    if not torch.isfinite(video).all():
        raise ValueError("video contains NaN or infinite values")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    p = check_writable(path, force)
    suffix = p.suffix.lower()
    if suffix not in WRITABLE_VIDEO_SUFFIXES:
        raise CodecError(f"Cannot write video '{p}': unknown suffix '{p.suffix}' (use .mp4 or .gif).")
    ffmpeg = _tool("ffmpeg")
    x = video.detach().float().cpu().clamp(0, 1)
    if suffix == ".mp4":  # yuv420p needs even sizes: repeat the last row / column
        x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")
    channels, _, height, width = x.shape
    pixels = (x * 255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
    rate = Fraction(fps).limit_denominator(1001)
    source = ["-f", "rawvideo", "-pix_fmt", "gray" if channels == 1 else "rgb24", "-s", f"{width}x{height}",
              "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
    if suffix == ".mp4":
        encode = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-movflags", "+faststart", "-f", "mp4"]
    else:
        encode = ["-filter_complex", "split[a][b];[a]palettegen=stats_mode=full:reserve_transparent=0[p];"
                  "[b][p]paletteuse=dither=none", "-loop", "0", "-f", "gif"]
    with atomic_write(p, force) as tmp:
        result = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", *source, *encode, str(tmp)],
                                input=pixels.tobytes(), capture_output=True)
        if result.returncode != 0:
            raise CodecError(f"Cannot write video '{p}' (ffmpeg: {_last_line(result.stderr)}).")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CodecError(f"{name} is not installed; install ffmpeg (e.g. apt-get install ffmpeg) to read "
                         "and write video.")
    return found


def _video_stream(p: Path) -> dict:
    """ffprobe's description of the first video stream of ``p`` that is not an attached picture."""
    command = [_tool("ffprobe"), "-v", "error", "-show_streams", "-of", "json", str(p)]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise CodecError(f"File '{p}' is not a readable video (ffprobe: {_last_line(result.stderr, p)}).")
    try:
        streams = json.loads(result.stdout).get("streams", [])
    except (json.JSONDecodeError, AttributeError):
        raise CodecError(f"Video file '{p}' cannot be read (ffprobe gave no description).") from None
    for stream in streams:
        if stream.get("codec_type") == "video" and not stream.get("disposition", {}).get("attached_pic"):
            return stream
    raise CodecError(f"File '{p}' has no video stream.")


def _count_packets(p: Path, index: int) -> int | None:
    command = [_tool("ffprobe"), "-v", "error", "-select_streams", str(index), "-count_packets",
               "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(p)]
    result = subprocess.run(command, capture_output=True)
    return _positive_int(result.stdout.decode(errors="replace").strip().rstrip(",")) if result.returncode == 0 else None


def _quarter_turn(stream: dict) -> bool:
    """Whether the stream is shown turned by 90 or 270 degrees (display matrix or a 'rotate' tag)."""
    angles = [side.get("rotation") for side in stream.get("side_data_list", [])]
    angles.append(stream.get("tags", {}).get("rotate"))
    for angle in angles:
        try:
            if round(float(angle)) % 180 == 90:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _positive_int(value: object) -> int | None:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _rate(value: object) -> float | None:
    """A positive frame rate from ffprobe's 'num/den' (None for '0/0' and nonsense)."""
    try:
        rate = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return None
    return rate if 0 < rate <= 10_000 else None


def _last_line(stderr: bytes, p: Path | None = None) -> str:
    """ffmpeg's last message line, without the file name it may start with."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    line = lines[-1] if lines else "no message"
    return (line.removeprefix(f"{p}: ") if p is not None else line).rstrip(".")
