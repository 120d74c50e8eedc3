"""The continuous-latent LM: patches, padding, training, KV-cached generation, guidance, checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

import cli
from codec.checkpoint import load_checkpoint, save_pretrained
from codec.train.checkpoints import latest_checkpoint, read_checkpoint
from slm.flow import FlowHeadConfig
from slm.latent_model import LatentLM, LatentLMConfig, SamplingOptions
from slm.shards import read_index
from slm.transformer import TransformerConfig

from .test_slm_train import _shards, quick_lm

runner = CliRunner()

D = 6


def tiny(patch: int = 1, cond_dropout: float = 0.1, seed: int = 0) -> LatentLM:
    torch.manual_seed(seed)
    config = LatentLMConfig(D, 50.0, [0.5] * D, [2.0] * D, patch,
                            TransformerConfig(dim=32, layers=2, heads=2, max_steps=64, dropout=0.0),
                            FlowHeadConfig(dim=32, blocks=2), cond_dropout)
    return LatentLM(config)


def waves(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Smooth, predictable latents [B, D, T]: sinusoids with random phases per item and dimension."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, D, 1, generator=g) * 6.28
    t = torch.arange(frames)[None, None] * 0.3
    return 0.5 + 2.0 * torch.sin(t + phase)


def randomize_head_output(model: LatentLM) -> None:
    """The head's output layer starts at zero (velocity 0); give it weights so samples depend on them."""
    for p in model.head.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)


def test_patches_round_trip_frames():
    model = tiny(patch=3)
    x = torch.randn(2, D, 12)
    assert torch.equal(model._frames(model._patches(x)), x)
    assert model._patches(x).shape == (2, 4, 3 * D)
    assert model._patches(x)[0, 1, :D].tolist() == x[0, :, 3].tolist()  # patch 1 starts with frame 3


def test_padding_never_changes_the_loss():
    model = tiny(patch=2).eval()
    x = waves(3, 21)
    lengths = torch.tensor([21, 15, 9])
    other = x.clone()
    for i, n in enumerate(lengths):
        other[i, :, n:] = 1e3
    losses = [model(v, lengths, torch.Generator().manual_seed(0)) for v in (x, other)]
    assert torch.equal(losses[0].loss, losses[1].loss)
    assert int(losses[0].patches) == 10 + 7 + 4  # whole patches within each length


def test_training_lowers_the_loss_on_latents():
    model = tiny()
    x = waves(16, 40)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = model(x, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert end < 0.5 * start, (start, end)


@pytest.mark.parametrize("patch", [1, 2])
def test_kv_cached_generation_equals_recomputation(patch):
    model = tiny(patch=patch, seed=1).eval()
    randomize_head_output(model)
    prompt = waves(2, 4)
    options = SamplingOptions(steps=3, solver="heun")
    cached = model.generate(prompt, 7, options, torch.Generator().manual_seed(5))
    full = model.generate(prompt, 7, options, torch.Generator().manual_seed(5), use_cache=False)
    assert cached.shape == (2, D, 11) and torch.isfinite(cached).all()
    assert torch.equal(cached[..., :4], prompt)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_temperature_guidance_and_seed():
    model = tiny(seed=2).eval()
    randomize_head_output(model)
    torch.nn.init.normal_(model.null_condition, std=1.0)
    prompt = waves(1, 4)
    run = lambda options, seed=0: model.generate(prompt, 5, options, torch.Generator().manual_seed(seed))
    base = SamplingOptions(steps=4)
    assert torch.equal(run(base), run(base))
    assert not torch.equal(run(base), run(base, seed=1))
    cold = SamplingOptions(steps=4, temperature=0.0)
    assert torch.equal(run(cold), run(cold, seed=1))  # no noise: the seed does not matter
    assert not torch.allclose(run(SamplingOptions(steps=4, guidance=3.0)), run(base))
    with pytest.raises(ValueError, match="solver"):
        SamplingOptions(solver="rk4")
    with pytest.raises(ValueError, match="too long|exceed"):
        model.generate(prompt, 100, base)


def test_checkpoint_round_trip(tmp_path):
    model = tiny(patch=2).eval()
    randomize_head_output(model)
    save_pretrained(model, tmp_path / "lm")
    loaded = load_checkpoint(tmp_path / "lm", model_type="latent_lm")
    assert loaded.config == model.config
    x = waves(1, 8)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(loaded(x, generator=g()).loss, model(x, generator=g()).loss)
    assert torch.equal(loaded.denormalize(loaded.normalize(x)), model.denormalize(model.normalize(x)))


def _latent_shards(tmp_path, tiny_model_dir):
    """The tones of test_slm_train as latent shards of the tiny codec."""
    _shards(tmp_path, tiny_model_dir)  # writes corpus/ (and codes in tokens/)
    result = runner.invoke(cli.app, ["tokenize", "--continuous", "--data", str(tmp_path / "corpus"),
                                     "--out", str(tmp_path / "latents"), "--model", str(tiny_model_dir),
                                     "--shard-size", "5"])
    assert result.exit_code == 0, result.stderr
    return tmp_path / "latents"


def _recipe(tmp_path, shards, steps: int) -> Path:
    recipe = tmp_path / "latent.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "latent_lm", "steps": steps, "batch_size": 4, "seed": 1, "valid_every": 10, "checkpoint_every": 10,
        "keep_checkpoints": 5, "log_every": 5, "optim": {"lr": 3e-3, "schedule": "constant"},
        "model": {"patch": 2, "transformer": {"dim": 32, "layers": 2, "heads": 2, "max_steps": 64},
                  "head": {"dim": 32, "blocks": 2, "noise_draws": 2}},
        "data": {"shards": str(shards), "valid_utterances": 2, "crop_frames": 40}}))
    return recipe


def test_latent_lm_trains_resumes_generates_and_evaluates(tmp_path, tiny_model_dir):
    shards = _latent_shards(tmp_path, tiny_model_dir)
    recipe = _recipe(tmp_path, shards, 20)
    result = runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    assert "flow_loss" in result.stdout
    best = load_checkpoint(tmp_path / "run" / "best")
    assert isinstance(best, LatentLM) and best.config.tokenizer == "tiny-test" and best.config.patch == 2
    index = read_index(shards)
    assert best.config.latent_mean == index.latent_stats.mean
    # --resume from step 10 reaches the same weights as the uninterrupted run
    final = read_checkpoint(latest_checkpoint(tmp_path / "run"))
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000020")
    (resumed / "checkpoints" / "latest").write_text("step_00000010\n")
    assert runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(resumed), "--resume"]).exit_code == 0
    again = read_checkpoint(latest_checkpoint(resumed))
    for name, value in final["model"].items():
        assert torch.equal(value, again["model"][name]), name

    prompt = tmp_path / "corpus" / "c00.wav"
    args = ["slm", "generate", "--checkpoint", str(tmp_path / "run" / "best"), "--prompt", str(prompt),
            "--seconds", "0.02", "--prompt-seconds", "0.03", "--head-steps", "2", "-o", str(tmp_path / "gen.wav")]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.stderr
    audio, rate = sf.read(tmp_path / "gen.wav")
    assert rate == 16000 and len(audio) == (30 + 20) * 16 and np.isfinite(audio).all()  # tiny codec: 1000 Hz frames
    bad = runner.invoke(cli.app, [*args[:-2], "--solver", "rk4", "-o", str(tmp_path / "bad.wav")])
    assert bad.exit_code == 1 and "solver" in bad.stderr and not (tmp_path / "bad.wav").exists()

    # side by side with a token LM of the same codec, on the same prompts
    prompts = tmp_path / "prompts"
    for speaker, pitch in (("a", 150), ("b", 250)):
        (prompts / speaker).mkdir(parents=True)
        for i in range(2):
            t = np.arange(int(16000 * 0.06)) / 16000
            sf.write(prompts / speaker / f"{i}.wav", (0.3 * np.sin(2 * np.pi * pitch * (1 + i / 10) * t)).astype(np.float32), 16000)
    (tmp_path / "token").mkdir()
    token_lm = quick_lm(tmp_path / "token", tmp_path / "tokens")
    report = tmp_path / "report"
    result = runner.invoke(cli.app, ["slm", "eval", "--checkpoint", str(tmp_path / "run" / "best"), "--shards", str(shards),
                                     "--out", str(report), "--valid-utterances", "2", "--prompts", str(prompts),
                                     "--prompt-seconds", "0.02", "--compare", str(token_lm), "--head-steps", "2"])
    assert result.exit_code == 0, result.stderr
    results = json.loads((report / "results.json").read_text())
    assert results["flow_loss"] > 0
    names = [s["name"] for s in results["systems"]]
    assert names[:2] == ["latent LM (flow head)", "token LM"]
    assert {"last prompt frame repeated", "Gaussian fitted to the prompts"} <= set(names)
    assert all(math.isfinite(s["energy"]) and s["frechet"] >= 0 for s in results["systems"])
    assert [(r["head_steps"], r["temperature"]) for r in results["sweep"]] == \
        [(1, 1.0), (2, 1.0), (4, 1.0), (8, 1.0), (20, 1.0), (2, 0.5), (2, 0.8)]
    assert (report / "plot.png").stat().st_size > 1000
    pairs = runner.invoke(cli.app, ["slm", "eval", "--checkpoint", str(tmp_path / "run" / "best"), "--shards",
                                    str(shards), "--out", str(tmp_path / "r2"), "--pairs", str(tmp_path / "x.jsonl")])
    assert pairs.exit_code == 1 and "likelihood" in pairs.stderr


def test_latent_and_token_shards_are_not_mixed_up(tmp_path, tiny_model_dir):
    shards = _latent_shards(tmp_path, tiny_model_dir)
    token_recipe = tmp_path / "token.yaml"
    token_recipe.write_text(yaml.safe_dump({"task": "token_lm", "steps": 2, "data": {"shards": str(shards)}}))
    result = runner.invoke(cli.app, ["slm", "train", str(token_recipe), "--run-dir", str(tmp_path / "r1")])
    assert result.exit_code == 1 and "holds latents, but this model trains on codes" in result.stderr
    result = runner.invoke(cli.app, ["slm", "train", str(_recipe(tmp_path, tmp_path / "tokens", 2)),
                                     "--run-dir", str(tmp_path / "r2")])
    assert result.exit_code == 1 and "--continuous" in result.stderr
