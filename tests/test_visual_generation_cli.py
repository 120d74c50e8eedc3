"""Image and video generators end to end: `codec train` (task image_generator) for every method,
`codec sample` and `codec lm eval`, and their errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import cli
from codec.checkpoint import save_pretrained
from codec.image import build_image_tokenizer
from codec.image.config import ImageTokenizerConfig
from codec.image.datasets import digits_images
from codec.image.io import read_image
from codec.quantization import QuantizerConfig
from codec.video.config import VideoTokenizerConfig
from codec.video.io import read_video
from codec.video.moving_digits import MovingDigits
from codec.video.tokenizer import CausalVideoTokenizer

runner = CliRunner()
TINY = {"dim": 32, "layers": 1, "heads": 2, "max_steps": 128}


def _initialised(model: torch.nn.Module, batch: torch.Tensor) -> torch.nn.Module:
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Tiny conv and multi-scale digit tokenizers and a moving-digits video tokenizer, saved as folders."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tokenizers")
    digits = digits_images("train", 16)
    batch = torch.stack([digits[i] for i in range(128)])
    quantizer = QuantizerConfig(kind="ema", n_q=2, codebook_size=16, kmeans_iters=3)
    conv = build_image_tokenizer(ImageTokenizerConfig(channels=1, image_size=16, downsample=4, width=8, latent_dim=4,
                                                      quantizer=quantizer))
    multiscale = build_image_tokenizer(ImageTokenizerConfig(
        architecture="multiscale", channels=1, image_size=16, downsample=4, width=8, latent_dim=4, scales=(1, 2, 4),
        quantizer=QuantizerConfig(kind="ema", n_q=1, codebook_size=16, kmeans_iters=3)))
    video = CausalVideoTokenizer(VideoTokenizerConfig(channels=1, image_size=16, frame_rate=8.0, spatial_downsample=4,
                                                      temporal_downsample=2, width=8, latent_dim=4,
                                                      quantizer=QuantizerConfig(kind="ema", n_q=1, codebook_size=16,
                                                                                kmeans_iters=3)))
    clips = MovingDigits(16, 5, size=16, digit_size=8)
    return {"conv": save_pretrained(_initialised(conv, batch), root / "conv"),
            "multiscale": save_pretrained(_initialised(multiscale, batch), root / "multiscale"),
            "video": save_pretrained(_initialised(video, torch.stack([clips[i] for i in range(16)])), root / "video")}


def train(tmp_path, name: str, tokenizer, method: str, **model) -> str:
    data = {"tokenizer": str(tokenizer), "dataset": "digits", "size": 16}
    if method == "video":
        method, data = "ar", {**data, "dataset": "moving_digits", "frames": 5, "train_items": 32, "valid_items": 8}
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "image_generator", "steps": 6, "batch_size": 8, "valid_every": 6, "checkpoint_every": 6,
        "model": {"method": method, "transformer": TINY, "head": {"dim": 32, "blocks": 1}, "head_steps": 2, **model},
        "data": data}))
    result = runner.invoke(cli.app, ["train", str(recipe), "--run-dir", str(tmp_path / name)])
    assert result.exit_code == 0, result.stderr
    return str(tmp_path / name / "best")


@pytest.fixture(scope="module")
def generators(tmp_path_factory, tokenizers):
    root = tmp_path_factory.mktemp("generators")
    return {"ar": train(root, "ar", tokenizers["conv"], "ar"),
            "maskgit": train(root, "maskgit", tokenizers["conv"], "maskgit", maskgit_steps=4),
            "var": train(root, "var", tokenizers["multiscale"], "var"),
            "flow": train(root, "flow", tokenizers["conv"], "flow", order="random")}


@pytest.mark.parametrize("method, passes", [("ar", 16), ("maskgit", 3), ("var", 3), ("flow", 3)])
def test_every_method_samples_a_grid(tmp_path, generators, method, passes):
    out = tmp_path / "grid.png"
    result = runner.invoke(cli.app, ["sample", "--model", generators[method], "--class", "3", "--n", "4",
                                     "--steps", "3", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert f"({passes} transformer passes)" in result.stdout  # AR: one per place; MaskGIT/MAR: steps; VAR: scales
    assert read_image(out).shape == (1, 2 * 18, 2 * 18)  # 2 x 2 tiles of 16 x 16 with 2-pixel gaps
    guided = runner.invoke(cli.app, ["sample", "--model", generators[method], "--n", "2", "--steps", "3", "--cfg", "2",
                                     "-o", str(tmp_path / "guided.png")])
    assert f"({2 * passes} transformer passes)" in guided.stdout  # the unconditional branch counts


def test_lm_eval_compares_methods_with_references_and_a_steps_sweep(tmp_path, generators):
    result = runner.invoke(cli.app, ["lm", "eval", *sum((["--model", generators[m]] for m in generators), []),
                                     "--n", "20", "--sweep-steps", "1,2", "--cfg", "1.5", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r" / "results.json").read_text())
    methods = [r["method"] for r in report["results"]]
    assert methods == ["reference", "reference", "ar", "maskgit", "var", "flow (random)"]
    real = report["results"][0]
    assert real["class_accuracy"] > 0.9 and real["frechet_distance"] < min(r["frechet_distance"]
                                                                           for r in report["results"][2:])
    sweep = [(r["method"], r["steps"], r["forward_passes"]) for r in report["steps_sweep"]]
    assert sweep == [("maskgit", 1, 2), ("maskgit", 2, 4), ("flow (random)", 1, 2), ("flow (random)", 2, 4)]
    for name in ("plot.png", "samples_ar.png", "samples_var.png", "results.md", "results.csv"):
        assert (tmp_path / "r" / name).stat().st_size > 0


def test_a_video_generator_writes_a_gif(tmp_path, tokenizers):
    model = train(tmp_path, "moving", tokenizers["video"], "video")
    out = tmp_path / "clips.gif"
    result = runner.invoke(cli.app, ["sample", "--model", model, "--n", "4", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    video, _ = read_video(out, channels=1)
    assert video.shape == (1, 5, 36, 36)  # 5 frames of a 2 x 2 tiling
    report = runner.invoke(cli.app, ["lm", "eval", "--model", model, "--n", "20", "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.stderr
    row = json.loads((tmp_path / "r" / "results.json").read_text())["results"][0]
    assert row["frame_change"] is not None and row["label_agreement"] is not None


@pytest.mark.parametrize("args, message", [
    (["sample", "--model", "{ar}", "--class", "10", "-o", "{out}/a.png"], "--class must be in 0..9"),
    (["sample", "--model", "{ar}", "-o", "{out}/a.gif"], "-o must end in .png"),
    (["sample", "--model", "{flow}", "--order", "raster", "-o", "{out}/a.png"], "trained for random order"),
    (["sample", "--model", "{conv}", "-o", "{out}/a.png"], "not an image or video generator"),
    (["lm", "eval", "--model", "{ar}", "--sweep-steps", "x", "--out", "{out}/r"], "comma-separated integers"),
])
def test_bad_generation_requests_are_one_clear_error(tmp_path, generators, tokenizers, args, message):
    paths = {**generators, **{k: str(v) for k, v in tokenizers.items()}, "out": str(tmp_path)}
    result = runner.invoke(cli.app, [a.format(**paths) for a in args])
    assert result.exit_code == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("tokenizer, method, message", [
    ("conv", "var", "needs a multi-scale tokenizer"),
    (None, "ar", "Set data.tokenizer"),
    ("devspeech_16khz", "ar", "is an audio codec"),
])
def test_bad_generator_configs_are_one_clear_error(tmp_path, tokenizers, tokenizer, method, message):
    name = tokenizers.get(tokenizer, tokenizer) if tokenizer else ""
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({"task": "image_generator", "steps": 2,
                                      "model": {"method": method, "transformer": TINY},
                                      "data": {"tokenizer": str(name), "size": 16}}))
    result = runner.invoke(cli.app, ["train", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and message in result.stderr, result.stderr
