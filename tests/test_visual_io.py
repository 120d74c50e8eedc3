"""Image and video files: exact round trips, mode conversions with their values, clear errors."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from codec.errors import CodecError
from codec.image import io as image_io
from codec.image.io import read_image, write_image
from codec.video import io as video_io
from codec.video.io import probe_video, read_video, write_video

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg is not installed")


def png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR claiming width x height 8-bit grey, and IEND: no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def smooth_video(channels: int = 3, frames: int = 12, height: int = 30, width: int = 41) -> torch.Tensor:
    """[C, T, H, W] in [0.1, 0.9]: slow sinusoids moving over time."""
    t = torch.arange(frames).view(frames, 1, 1)
    y = torch.arange(height).view(1, height, 1)
    x = torch.arange(width).view(1, 1, width)
    planes = [0.5 + 0.3 * torch.sin(2 * math.pi * (x / width + t / frames)) + 0 * y,
              0.5 + 0.3 * torch.cos(2 * math.pi * (y / height - t / frames)) + 0 * x,
              0.2 + 0.6 * x / width + 0 * (y + t)]
    return torch.stack(planes[:channels]).float()


# ---- images -----------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_is_exact_for_8_bits(tmp_path, channels):
    pixels = torch.randint(0, 256, (channels, 7, 5), generator=torch.Generator().manual_seed(0))
    image = pixels.float() / 255
    write_image(tmp_path / "a.png", image)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.shape == (channels, 7, 5)
    assert torch.equal((back * 255).round().long(), pixels)
    assert torch.allclose(back, image, atol=1e-7)


def test_channel_conversion_grey_to_rgb_and_rgb_to_luma(tmp_path):
    rgb = torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(1))
    write_image(tmp_path / "rgb.png", rgb)
    grey = read_image(tmp_path / "rgb.png", channels=1)
    pillow_luma = np.asarray(Image.open(tmp_path / "rgb.png").convert("L"), dtype=np.float32) / 255
    assert grey.shape == (1, 6, 4)
    assert np.abs(grey[0].numpy() - pillow_luma).max() <= 1 / 255 + 1e-6
    write_image(tmp_path / "grey.png", grey)
    as_rgb = read_image(tmp_path / "grey.png", channels=3)
    assert as_rgb.shape == (3, 6, 4) and torch.equal(as_rgb[0], as_rgb[2])


def test_sixteen_bit_grey_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 1, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    x = read_image(tmp_path / "deep.png")
    assert x.shape == (1, 1, 5)
    torch.testing.assert_close(x[0, 0], torch.tensor([0, 1, 257, 32768, 65535]) / 65535)


def test_palette_and_palette_transparency(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    im.putdata([0, 1, 2])
    im.save(tmp_path / "palette.png")
    x = read_image(tmp_path / "palette.png")
    assert torch.equal(x[:, 0], torch.eye(3))
    im.save(tmp_path / "transparent.png", transparency=1)  # green is transparent: white on a page
    x = read_image(tmp_path / "transparent.png")
    assert torch.equal(x[:, 0], torch.tensor([[1.0, 1, 0], [0, 1, 0], [0, 1, 1]]))


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 51]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert x.shape == (3, 1, 3)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([1.0, 0, 0]))  # opaque: the colour
    torch.testing.assert_close(x[:, 0, 1], torch.ones(3))  # transparent: white
    torch.testing.assert_close(x[:, 0, 2], torch.full((3,), 0.8))  # 20% black over white
    Image.fromarray(np.array([[[0, 255], [0, 0]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    torch.testing.assert_close(read_image(tmp_path / "la.png"), torch.tensor([[[0.0, 1.0]]]))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg", quality=95)
    x = read_image(tmp_path / "cyan.jpg")
    assert x.shape == (3, 16, 16)
    torch.testing.assert_close(x.mean((1, 2)), torch.tensor([0.0, 1.0, 1.0]), atol=0.03, rtol=0)
    Image.new("CMYK", (16, 16), (0, 0, 0, 128)).save(tmp_path / "grey.jpg", quality=95)
    torch.testing.assert_close(read_image(tmp_path / "grey.jpg").mean((1, 2)), torch.full((3,), 0.5),
                               atol=0.03, rtol=0)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (8, 4), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    im.save(tmp_path / "turned.jpg", exif=exif)
    assert read_image(tmp_path / "turned.jpg").shape == (3, 8, 4)


def test_bad_image_files_give_clear_errors(tmp_path, monkeypatch):
    write_image(tmp_path / "good.png", torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(2)))
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    (tmp_path / "zero.png").write_bytes(png_header(0, 5))
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "good.jpg")
    jpeg = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # must not hide truncation
    cases = {"missing.png": "does not exist", "empty.png": "is empty", "notes.png": "not an image",
             "cut.png": "truncated", "cut.jpg": "truncated", "zero.png": "not an image"}
    for name, words in cases.items():
        with pytest.raises(CodecError, match=words) as info:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (10_000, 10_000)])
def test_huge_dimensions_are_refused_before_decoding(tmp_path, width, height):
    """Above Pillow's own bomb limit (100000^2) and between ours and Pillow's (10000^2): the
    header alone is refused (there is no pixel data, so a decode would say 'truncated')."""
    (tmp_path / "huge.png").write_bytes(png_header(width, height))
    with pytest.raises(CodecError, match="huge.png.*pixels.*refusing to decode"):
        read_image(tmp_path / "huge.png")


def test_max_pixels_applies_to_real_images(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", torch.zeros(1, 20, 20))
    monkeypatch.setattr(image_io, "MAX_PIXELS", 399)
    with pytest.raises(CodecError, match="20 x 20 pixels, more than the limit of 399"):
        read_image(tmp_path / "a.png")


def test_unsupported_mode_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(CodecError, match="float.tif.*unsupported pixel mode 'F'"):
        read_image(tmp_path / "float.tif")


def test_write_image_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, torch.zeros(1, 4, 4))
    with pytest.raises(CodecError, match="already exists"):
        write_image(path, torch.ones(1, 4, 4))
    assert read_image(path).max() == 0
    write_image(path, torch.ones(1, 4, 4), force=True)
    assert read_image(path).min() == 1
    with pytest.raises(CodecError, match="unknown suffix '.xyz'"):
        write_image(tmp_path / "a.xyz", torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        write_image(tmp_path / "b.png", torch.zeros(2, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary files left


def test_jpeg_by_suffix(tmp_path):
    image = smooth_video(frames=1)[:, 0]
    write_image(tmp_path / "a.jpg", image)
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"
    assert (read_image(tmp_path / "a.jpg") - image).abs().mean() < 0.02


# ---- videos -----------------------------------------------------------------------------------

@needs_ffmpeg
def test_mp4_round_trip(tmp_path):
    video = smooth_video()  # odd width 41: padded to 42 by repeating the last column
    write_video(tmp_path / "a.mp4", video, fps=12.5)
    info = probe_video(tmp_path / "a.mp4")
    assert (info.width, info.height, info.frames, info.fps) == (42, 30, 12, 12.5)
    back, fps = read_video(tmp_path / "a.mp4")
    assert fps == 12.5 and back.shape == (3, 12, 30, 42) and back.dtype == torch.float32
    assert (back[..., :41] - video).abs().mean() < 0.03
    assert (back[..., 41] - video[..., 40]).abs().mean() < 0.03
    part, _ = read_video(tmp_path / "a.mp4", max_frames=4, start=5)
    assert torch.equal(part, back[:, 5:9])
    with pytest.raises(CodecError, match="already exists"):
        write_video(tmp_path / "a.mp4", video, fps=10)


@needs_ffmpeg
def test_gif_round_trip_grey_and_colour(tmp_path):
    video = smooth_video()
    write_video(tmp_path / "a.gif", video, fps=10)
    back, fps = read_video(tmp_path / "a.gif")
    assert fps == 10 and back.shape == (3, 12, 30, 41)
    assert (back - video).abs().mean() < 0.04
    grey = smooth_video(channels=1, frames=5)
    write_video(tmp_path / "grey.gif", grey, fps=20)
    back, fps = read_video(tmp_path / "grey.gif", channels=1)
    assert fps == 20 and back.shape == (1, 5, 30, 41)
    assert (back - grey).abs().max() < 0.01  # a grey clip fits the 256-colour palette


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_one_frame_video(tmp_path, suffix):
    frame = smooth_video(frames=1, height=16, width=16)
    write_video(tmp_path / f"one{suffix}", frame, fps=25)
    back, fps = read_video(tmp_path / f"one{suffix}")
    assert back.shape == (3, 1, 16, 16) and fps > 0
    assert (back - frame).abs().mean() < 0.04


@needs_ffmpeg
def test_rotated_video_reports_upright_size(tmp_path):
    write_video(tmp_path / "a.mp4", smooth_video(frames=3, height=16, width=24), fps=10)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "a.mp4"), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(tmp_path / "turned.mp4")], check=True)
    info = probe_video(tmp_path / "turned.mp4")
    assert (info.width, info.height) == (16, 24)
    assert read_video(tmp_path / "turned.mp4")[0].shape == (3, 3, 24, 16)


@needs_ffmpeg
def test_bad_video_files_give_clear_errors(tmp_path):
    write_video(tmp_path / "a.mp4", smooth_video(frames=24), fps=24)
    data = (tmp_path / "a.mp4").read_bytes()
    for fraction in (0.2, 0.6, 0.95):
        cut = tmp_path / f"cut{fraction}.mp4"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(CodecError, match="truncated|not a readable video") as info:
            read_video(cut)
        assert str(cut) in str(info.value)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", "-c:a", "aac",
                    str(tmp_path / "audio.mp4")], check=True)
    with pytest.raises(CodecError, match="audio.mp4' has no video stream"):
        read_video(tmp_path / "audio.mp4")
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with pytest.raises(CodecError, match="notes.mp4' is not a readable video"):
        read_video(tmp_path / "notes.mp4")
    with pytest.raises(CodecError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(CodecError, match="unknown suffix"):
        write_video(tmp_path / "a.avi", smooth_video(), fps=10)


@needs_ffmpeg
def test_video_size_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    write_video(tmp_path / "a.mp4", smooth_video(frames=4), fps=10)
    monkeypatch.setattr(video_io, "MAX_VIDEO_VALUES", 3 * 30 * 42 * 3)
    with pytest.raises(CodecError, match="too large to read whole"):
        read_video(tmp_path / "a.mp4")
    assert read_video(tmp_path / "a.mp4", max_frames=3)[0].shape == (3, 3, 30, 42)


def test_missing_ffmpeg_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io.shutil, "which", lambda name: None)
    (tmp_path / "a.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(CodecError, match="is not installed; install ffmpeg"):
        read_video(tmp_path / "a.mp4")
    with pytest.raises(CodecError, match="is not installed; install ffmpeg"):
        write_video(tmp_path / "b.mp4", smooth_video(frames=2), fps=10)
