"""JPEG / WebP at a bit budget or quality, and H.264 / VP9 at a bitrate, through Pillow and ffmpeg."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from codec.errors import CodecError
from codec.eval import visual_baselines as vb
from codec.eval.image_metrics import per_frame, psnr
from codec.eval.visual_baselines import (jpeg_at_bits, jpeg_at_quality, jpeg_payload_bytes, video_at_bitrate,
                                         video_at_crf, webp_at_bits, webp_at_quality, webp_payload_bytes)

VIDEO = vb.available_video_codecs()
needs_h264 = pytest.mark.skipif(not VIDEO["h264"], reason="ffmpeg with libx264 is not installed")
needs_vp9 = pytest.mark.skipif(not VIDEO["vp9"], reason="ffmpeg with libvpx-vp9 is not installed")
FPS = 16  # 16 frames = 1 s: kbps equals kbit in the file
BITRATE_TOLERANCE = 0.25  # two-pass rate control on a 1 s clip lands within 25% of a reasonable target


def photo(channels: int, size: int = 64) -> torch.Tensor:
    """A crop of scikit-image's astronaut (RGB) or camera (grey): [C, size, size] in [0, 1]."""
    image = data.astronaut() if channels == 3 else data.camera()[..., None]
    crop = image[100:100 + size, 180:180 + size].astype(np.float32) / 255
    return torch.from_numpy(crop).permute(2, 0, 1).contiguous()


def smooth(channels: int, size: int = 64) -> torch.Tensor:
    """A gentle colour ramp: [C, size, size]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    tint = torch.tensor([1.0, 0.8, 0.6])[:channels, None, None]
    return (0.2 + 0.4 * xx + 0.2 * yy) * tint


def moving_square(channels: int = 3, frames: int = 16, height: int = 64, width: int = 64) -> torch.Tensor:
    """An orange square moving right over a ramp, with fresh grain every frame: [C, T, H, W]."""
    g = torch.Generator().manual_seed(0)
    video = smooth(3, max(height, width))[:, None, :height, :width].repeat(1, frames, 1, 1)
    for t in range(frames):
        video[:, t, height // 3:height // 3 + 16, 2 + 3 * t:18 + 3 * t] = torch.tensor([0.9, 0.5, 0.2])[:, None, None]
    grain = 0.04 * torch.randn(1, frames, height, width, generator=g)
    return (video + grain).clamp(0, 1)[:channels]


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("at_bits, at_quality", [(jpeg_at_bits, jpeg_at_quality), (webp_at_bits, webp_at_quality)])
@pytest.mark.parametrize("channels", [1, 3])
def test_budget_is_respected_and_quality_rises_with_it(at_bits, at_quality, channels):
    image = photo(channels)
    results = [at_bits(image, budget) for budget in (3000, 6000, 12000, 24000)]
    for budget, coded in zip((3000, 6000, 12000, 24000), results):
        assert not coded.over_budget and coded.bits <= budget
        assert coded.reconstruction.shape == image.shape
        # the highest quality that fits: one step up is over the budget (or the range ends)
        if coded.quality < (95 if at_bits is jpeg_at_bits else 100):
            assert at_quality(image, coded.quality + 1).bits > budget
        assert at_quality(image, coded.quality).bits == coded.bits
    qualities = [r.quality for r in results]
    scores = [psnr(image[None], r.reconstruction[None]).item() for r in results]
    assert qualities == sorted(qualities) and qualities[0] < qualities[-1]
    assert scores == sorted(scores) and scores[0] < scores[-1]


@pytest.mark.parametrize("at_bits, lowest", [(jpeg_at_bits, 1), (webp_at_bits, 0)])
def test_a_tiny_budget_is_flagged_over_budget(at_bits, lowest):
    image = photo(3, 32)
    coded = at_bits(image, 100)
    assert coded.over_budget and coded.quality == lowest and coded.bits > 100
    assert coded.reconstruction.shape == image.shape


@pytest.mark.parametrize("at_quality, quality", [(jpeg_at_quality, 95), (webp_at_quality, 95)])
@pytest.mark.parametrize("channels", [1, 3])
def test_high_quality_reconstructs_a_smooth_image(at_quality, quality, channels):
    image = smooth(channels)
    coded = at_quality(image, quality)
    assert coded.reconstruction.shape == image.shape and coded.reconstruction.dtype == torch.float32
    assert psnr(image[None], coded.reconstruction[None]).item() > 30
    assert not coded.over_budget and coded.codec == at_quality.__name__[:4]


def test_jpeg_payload_is_the_entropy_coded_segment():
    pil, buffer = Image.fromarray(data.astronaut()[:64, :64]), io.BytesIO()
    pil.save(buffer, format="JPEG", quality=50, optimize=True)
    jpeg = buffer.getvalue()
    sos = jpeg.index(b"\xff\xda")
    header_end = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    assert jpeg[-2:] == b"\xff\xd9"
    assert jpeg_payload_bytes(jpeg) == len(jpeg) - 2 - header_end

    coded = jpeg_at_quality(photo(3), 50)
    assert 0 < coded.payload_bits < coded.bits and coded.payload_bits % 8 == 0
    # progressive files have several scans; their data is counted, their headers not
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=50, progressive=True)
    progressive = buffer.getvalue()
    assert progressive.count(b"\xff\xda") > 1
    assert 0.8 * jpeg_payload_bytes(jpeg) < jpeg_payload_bytes(progressive) < len(progressive) - 2 - header_end


@pytest.mark.parametrize("at_bits", [jpeg_at_bits, webp_at_bits])
def test_a_payload_budget_ignores_the_headers(at_bits):
    image = photo(3)
    by_file, by_payload = at_bits(image, 4000), at_bits(image, 4000, include_headers=False)
    assert by_file.bits <= 4000 < by_payload.bits and by_payload.payload_bits <= 4000
    assert by_payload.quality > by_file.quality
    assert at_bits(image, 100, include_headers=False).over_budget


def test_webp_payload_excludes_the_riff_and_chunk_headers():
    coded = webp_at_quality(photo(3), 50)
    assert coded.bits - coded.payload_bits == 8 * 20  # "RIFF" size "WEBP" + "VP8 " size


def test_payload_parsers_reject_foreign_or_truncated_data():
    buffer = io.BytesIO()
    Image.fromarray(data.camera()[:32, :32]).save(buffer, format="JPEG", quality=80)
    with pytest.raises(CodecError, match="not a JPEG"):
        jpeg_payload_bytes(b"RIFF0000WEBP")
    with pytest.raises(CodecError, match="without an EOI"):
        jpeg_payload_bytes(buffer.getvalue()[:-2])
    with pytest.raises(CodecError, match="not a WebP"):
        webp_payload_bytes(buffer.getvalue())


def test_image_arguments_are_checked():
    with pytest.raises(ValueError, match="C = 1 or 3"):
        jpeg_at_quality(torch.rand(2, 16, 16), 50)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        webp_at_bits(torch.rand(1, 3, 16, 16), 1000)
    with pytest.raises(ValueError, match=r"quality must be in 1\.\.95"):
        jpeg_at_quality(torch.rand(3, 16, 16), 100)
    with pytest.raises(ValueError, match="target_bits must be positive"):
        jpeg_at_bits(torch.rand(3, 16, 16), 0)


# ---------------------------------------------------------------- videos


@pytest.mark.parametrize("codec", [pytest.param("h264", marks=needs_h264), pytest.param("vp9", marks=needs_vp9)])
def test_video_meets_the_bitrate_and_more_bits_give_higher_psnr(codec):
    video = moving_square()
    results = [video_at_bitrate(video, FPS, kbps, codec) for kbps in (100, 250)]
    for kbps, coded in zip((100, 250), results):
        assert coded.reconstruction.shape == video.shape and coded.codec == codec
        assert coded.kbps_actual == pytest.approx(coded.bits / 1000)  # 1 s of video
        assert abs(coded.kbps_actual - kbps) <= BITRATE_TOLERANCE * kbps, (kbps, coded.kbps_actual)
    low, high = (per_frame(psnr, video[None], r.reconstruction[None]).item() for r in results)
    assert 25 < low < high


@needs_h264
def test_odd_sized_grey_video_is_padded_and_cropped_back():
    video = moving_square(channels=1, frames=5, height=31, width=45)
    coded = video_at_crf(video, 25, 10, "h264")
    assert coded.reconstruction.shape == video.shape
    assert coded.kbps_actual == pytest.approx(coded.bits / (5 / 25) / 1000)
    assert per_frame(psnr, video[None], coded.reconstruction[None]).item() > 38  # aligned: grain survives


@needs_vp9
def test_lower_crf_gives_more_bits_and_higher_psnr():
    video = moving_square(frames=8)
    fine, coarse = video_at_crf(video, FPS, 20, "vp9"), video_at_crf(video, FPS, 50, "vp9")
    assert fine.bits > coarse.bits
    assert psnr(video.transpose(0, 1), fine.reconstruction.transpose(0, 1)).mean() > \
        psnr(video.transpose(0, 1), coarse.reconstruction.transpose(0, 1)).mean()


@needs_h264
def test_ffmpeg_failure_is_a_codec_error_with_its_message(monkeypatch):
    monkeypatch.setitem(vb.VIDEO_ENCODERS, "h264", "libnonexistent264")
    with pytest.raises(CodecError, match="ffmpeg failed .*libnonexistent264"):
        video_at_crf(moving_square(frames=2), FPS, 23, "h264")


def test_video_arguments_are_checked():
    video = moving_square(frames=2)
    with pytest.raises(ValueError, match=r"\[C, T, H, W\]"):
        video_at_bitrate(video[None], FPS, 100)
    with pytest.raises(ValueError, match="Unknown video codec 'av1'"):
        video_at_bitrate(video, FPS, 100, "av1")
    with pytest.raises(ValueError, match="kbps must be positive"):
        video_at_bitrate(video, FPS, 0)
    with pytest.raises(ValueError, match="fps must be positive"):
        video_at_crf(video, 0, 23)
    with pytest.raises(ValueError, match=r"CRF must be in 0\.\.51"):
        video_at_crf(video, FPS, 60, "h264")
