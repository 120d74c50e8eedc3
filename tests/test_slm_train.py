"""Training a TokenLM with the shared loop: on shards from `codec tokenize`, resumable, best model saved."""

from __future__ import annotations

import shutil

import numpy as np
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

import cli
from codec.checkpoint import load_checkpoint
from codec.train.checkpoints import latest_checkpoint, read_checkpoint
from slm.model import TokenLM

from .test_cli import speech_like

runner = CliRunner()


def _shards(tmp_path, tiny_model_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):  # tones of a few pitches: learnable sequences
        t = np.arange(int(16000 * 0.4)) / 16000
        sf.write(corpus / f"c{i:02d}.wav", (0.3 * np.sin(2 * np.pi * (150 + 50 * (i % 3)) * t)).astype(np.float32), 16000)
    result = runner.invoke(cli.app, ["tokenize", "--data", str(corpus), "--out", str(tmp_path / "tokens"),
                                     "--model", str(tiny_model_dir), "--n-q", "2", "--shard-size", "5"])
    assert result.exit_code == 0, result.stderr
    return tmp_path / "tokens"


def test_token_lm_trains_resumes_and_keeps_its_best(tmp_path, tiny_model_dir):
    shards = _shards(tmp_path, tiny_model_dir)
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "token_lm", "steps": 30, "batch_size": 4, "seed": 1, "valid_every": 15, "checkpoint_every": 10,
        "keep_checkpoints": 5, "log_every": 5, "optim": {"lr": 3e-3, "schedule": "constant"},
        "model": {"pattern": "delay", "transformer": {"dim": 32, "layers": 2, "heads": 2, "max_steps": 64}},
        "data": {"shards": str(shards), "valid_utterances": 2, "crop_frames": 40}}))
    straight = tmp_path / "straight"
    result = runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(straight)])
    assert result.exit_code == 0, result.stderr
    assert "bits_per_token" in result.stdout
    best = load_checkpoint(straight / "best")
    assert isinstance(best, TokenLM) and best.config.tokenizer == "tiny-test" and best.config.n_q == 2
    final = read_checkpoint(latest_checkpoint(straight))
    line = next(x for x in result.stdout.splitlines() if x.startswith("final validation:"))
    bits = float(line.split("bits_per_token ")[1].split(",")[0])
    assert bits < 0.5 * np.log2(64)  # held-out tones: well below a uniform code's 6 bits
    # --resume from step 10 reaches the same weights as the uninterrupted run
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for later in ("step_00000020", "step_00000030"):
        shutil.rmtree(resumed / "checkpoints" / later)
    (resumed / "checkpoints" / "latest").write_text("step_00000010\n")
    result = runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(resumed), "--resume"])
    assert result.exit_code == 0, result.stderr
    again = read_checkpoint(latest_checkpoint(resumed))
    for name, value in final["model"].items():
        assert torch.equal(value, again["model"][name]), name


def test_token_lm_config_errors(tmp_path):
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(yaml.safe_dump({"task": "token_lm", "steps": 2}))
    result = runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "data.shards" in result.stderr
    result = runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(tmp_path / "r"),
                                     "--set", f"data.shards={tmp_path}"])
    assert result.exit_code == 1 and "codec tokenize" in result.stderr


def quick_lm(tmp_path, shards, steps: int = 4):
    """A barely trained one-layer LM on ``shards``: its best/ folder."""
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "token_lm", "steps": steps, "batch_size": 4, "valid_every": steps, "checkpoint_every": steps,
        "model": {"transformer": {"dim": 32, "layers": 1, "heads": 2, "max_steps": 128}},
        "data": {"shards": str(shards), "valid_utterances": 2, "crop_frames": 40}}))
    assert runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    return tmp_path / "run" / "best"


def test_generate_continues_prompts_with_the_lms_codec(tmp_path, tiny_model_dir):
    quick_lm(tmp_path, _shards(tmp_path, tiny_model_dir))
    prompts = []
    for i, seconds in enumerate((0.05, 0.08)):
        prompts.append(tmp_path / f"p{i}.wav")
        sf.write(prompts[-1], speech_like(16000, seconds, 1, seed=i)[:, 0], 16000)
    args = ["slm", "generate", "--checkpoint", str(tmp_path / "run" / "best"), "--seconds", "0.02", "--seed", "3",
            "--prompt", str(prompts[0]), "--prompt", str(prompts[1]), "-o", str(tmp_path / "out")]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.stderr
    # the shorter prompt (0.05 s = 50 frames of the tiny codec at 1000 Hz) sets the batch's prompt length
    for name in ("p0_continued.wav", "p1_continued.wav"):
        assert sf.info(tmp_path / "out" / name).frames == (50 + 20) * 16
    first = (tmp_path / "out" / "p1_continued.wav").read_bytes()
    assert runner.invoke(cli.app, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "out" / "p1_continued.wav").read_bytes() == first  # same seed, same audio
    result = runner.invoke(cli.app, ["slm", "generate", "--checkpoint", str(tmp_path / "run" / "best"),
                                     "--prompt", str(prompts[0]), "--codec", "devspeech_16khz", "-o", str(tmp_path / "x.wav")])
    assert result.exit_code == 1 and "is not the one the LM was trained on" in result.stderr
    assert not (tmp_path / "x.wav").exists()
