"""`codec encode/decode/info/eval` with image and video tokenizers: chosen by the model's modality,
sizes restored, bits reported, classic codecs compared at equal bits, bad input one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.checkpoint import load_checkpoint, save_pretrained
from codec.image import build_image_tokenizer
from codec.image.bitstream import read_visual_cdc
from codec.image.config import ImageTokenizerConfig
from codec.image.datasets import digits_images
from codec.image.io import read_image, write_image
from codec.quantization import QuantizerConfig
from codec.video.config import VideoTokenizerConfig
from codec.video.io import read_video, write_video
from codec.video.moving_digits import MovingDigits
from codec.video.tokenizer import CausalVideoTokenizer

runner = CliRunner()


def _initialise(model: torch.nn.Module, batch: torch.Tensor) -> None:
    """One training-mode pass: the EMA codebooks take k-means centres of real latents."""
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    torch.manual_seed(0)
    config = ImageTokenizerConfig(channels=1, image_size=16, downsample=4, width=8, latent_dim=4,
                                  quantizer=QuantizerConfig(kind="ema", n_q=2, codebook_size=16, kmeans_iters=3))
    model = build_image_tokenizer(config)
    digits = digits_images("train", 16)
    _initialise(model, torch.stack([digits[i] for i in range(64)]))
    return save_pretrained(model, tmp_path_factory.mktemp("models", numbered=False) / "tiny_image")


@pytest.fixture(scope="module")
def video_model(tmp_path_factory):
    torch.manual_seed(0)
    config = VideoTokenizerConfig(channels=1, image_size=16, frame_rate=8.0, spatial_downsample=4,
                                  temporal_downsample=2, width=8, latent_dim=4,
                                  quantizer=QuantizerConfig(kind="ema", n_q=1, codebook_size=16, kmeans_iters=3))
    model = CausalVideoTokenizer(config)
    videos = MovingDigits(8, 5, size=16, digit_size=8)
    _initialise(model, torch.stack([videos[i] for i in range(8)]))
    return save_pretrained(model, tmp_path_factory.mktemp("video_models", numbered=False) / "tiny_video")


def invoke(*args: str):
    return runner.invoke(cli.app, [str(a) for a in args])


def test_images_of_any_size_round_trip_through_cdc_files(tmp_path, image_model):
    digit = digits_images("test", 16)[0]
    odd = torch.rand(1, 21, 30)  # not a multiple of the downsampling: padded, then cropped back
    write_image(tmp_path / "digit.png", digit)
    write_image(tmp_path / "odd.png", odd)
    result = invoke("encode", tmp_path / "digit.png", tmp_path / "odd.png", "--model", image_model, "-o", tmp_path / "codes")
    assert result.exit_code == 0, result.stderr
    header, codes = read_visual_cdc(tmp_path / "codes" / "odd.cdc")
    assert (header.height, header.width, header.grid, codes.shape) == (21, 30, (6, 8), (2, 6, 8))
    result = invoke("decode", tmp_path / "codes" / "digit.cdc", tmp_path / "codes" / "odd.cdc", "--model", image_model,
                    "-o", tmp_path / "decoded")
    assert result.exit_code == 0, result.stderr
    assert read_image(tmp_path / "decoded" / "odd.png").shape == (1, 21, 30)
    model = load_checkpoint(image_model)
    expected = model.decode(model.encode(digit[None]))[0]  # what the library gives, written as 8-bit PNG
    assert (read_image(tmp_path / "decoded" / "digit.png") - expected).abs().max() <= 0.5 / 255 + 1e-6

    result = invoke("info", tmp_path / "codes" / "digit.cdc")
    assert result.exit_code == 0, result.stderr
    assert "image 16x16" in result.stdout and "4x4 grid, 2 levels" in result.stdout
    assert "128 bits, 0.5000 bits per pixel" in result.stdout  # 16 cells x 2 levels x 4 bits over 256 pixels

    fewer = invoke("encode", tmp_path / "digit.png", "--model", image_model, "--n-q", "1", "-o", tmp_path / "one.cdc")
    assert fewer.exit_code == 0, fewer.stderr
    assert read_visual_cdc(tmp_path / "one.cdc")[1].shape == (1, 4, 4)


def test_a_video_round_trips_and_reports_its_bitrate(tmp_path, video_model):
    clip = MovingDigits(1, 6, size=16, digit_size=8, split="test")[0]  # 6 frames: padded to 7 in time, cut back
    write_video(tmp_path / "clip.mp4", clip, fps=8.0)
    result = invoke("encode", tmp_path / "clip.mp4", "--model", video_model, "-o", tmp_path / "clip.cdc")
    assert result.exit_code == 0, result.stderr
    header, codes = read_visual_cdc(tmp_path / "clip.cdc")
    assert header.video and (header.frames, header.token_frames, header.fps) == (6, 4, 8.0)
    assert codes.shape == (1, 4, 4, 4)
    result = invoke("decode", tmp_path / "clip.cdc", "--model", video_model, "-o", tmp_path / "out.gif")
    assert result.exit_code == 0, result.stderr
    video, _ = read_video(tmp_path / "out.gif", channels=1)
    assert video.shape == (1, 6, 16, 16)
    info = invoke("info", tmp_path / "clip.cdc")
    assert "6 frames at 8 fps" in info.stdout
    # 4 token frames x 16 cells x 4 bits in 0.75 s
    assert "nominal bitrate:    0.341 kbps (256 bits in 0.750 s)" in info.stdout


def test_image_eval_compares_with_jpeg_and_webp_at_equal_bits(tmp_path, image_model):
    result = invoke("eval", "--model", image_model, "--data", "digits", "--max-clips", "4", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.stderr
    document = json.loads((tmp_path / "report" / "results.json").read_text())
    summary = {s["system"]: s for s in document["summary"]}
    assert set(summary) == {"models/tiny_image (1 level)", "models/tiny_image (2 levels)",
                            "JPEG at the bits of models/tiny_image (1 level)", "WebP at the bits of models/tiny_image (1 level)",
                            "JPEG at the bits of models/tiny_image (2 levels)", "WebP at the bits of models/tiny_image (2 levels)"}
    assert summary["models/tiny_image (1 level)"]["bpp"] == pytest.approx(16 * 4 / 256)
    token_bits = {(r["system"], r["item"]): r["bits"] for r in document["rows"] if r["kind"] == "tokenizer"}
    for row in document["rows"]:
        if row["kind"] != "tokenizer":  # equal bits: never more than the tokens, unless the codec cannot get that low
            tokens = token_bits[(row["system"].split(" at the bits of ")[1], row["item"])]
            assert row["bits"] <= tokens or row["over_budget"]
    assert len(document["sweep"]) > 10 and all(0 < s["ssim"] <= 1 for s in document["sweep"])
    for name in ("plot.png", "grid.png", "results.md", "results.csv"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    again = invoke("eval", "--model", image_model, "--data", "digits", "--out", tmp_path / "report")
    assert again.exit_code == 1 and "--force" in again.stderr


def test_video_eval_compares_with_h264_at_equal_bitrate(tmp_path, video_model):
    result = invoke("eval", "--model", video_model, "--data", "moving_digits", "--max-clips", "2",
                    "--out", tmp_path / "report")
    assert result.exit_code == 0, result.stderr
    systems = {s["system"] for s in json.loads((tmp_path / "report" / "results.json").read_text())["summary"]}
    assert "H264 at the bitrate of video_models/tiny_video" in systems


@pytest.mark.parametrize("args, message", [
    (["encode", "{png}"], "pass --model with an image or video tokenizer"),
    (["encode", "{png}", "--model", "{image}", "--bandwidth", "3"], "no bitrate per second"),
    (["encode", "{bad}", "--model", "{image}"], "bad.png"),
    (["encode", "{rgb}", "--model", "{image}", "--n-q", "3"], "--n-q must be between 1 and 2"),
    (["decode", "{audio_cdc}", "--model", "{image}"], "holds audio tokens, but tiny_image is an image tokenizer"),
    (["eval", "--model", "{image}", "--data", "nowhere", "--out", "{out}"], "--data must be"),
    (["eval", "--model", "{image}", "--data", "digits", "--baseline", "opus", "--out", "{out}"], "drop --bandwidth"),
])
def test_bad_visual_input_is_one_clear_error(tmp_path, image_model, args, message):
    write_image(tmp_path / "x.png", torch.rand(1, 16, 16))
    write_image(tmp_path / "rgb.png", torch.rand(3, 16, 16))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    sf.write(tmp_path / "tone.wav", 0.1 * np.sin(np.arange(8000) / 5).astype(np.float32), 16000)
    assert invoke("encode", tmp_path / "tone.wav", "-o", tmp_path / "audio.cdc").exit_code == 0
    paths = {"png": tmp_path / "x.png", "rgb": tmp_path / "rgb.png", "bad": tmp_path / "bad.png",
             "image": image_model, "audio_cdc": tmp_path / "audio.cdc", "out": tmp_path / "out"}
    result = invoke(*[a.format(**paths) for a in args])
    assert result.exit_code == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.cdc").exists() or args[0] != "encode"
