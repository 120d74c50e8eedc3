"""Training: config overrides, schedules, checkpoints, resume, Ctrl-C, non-finite losses,
distributed data parallel equivalence, clear messages (empty corpora, devices, the end of a run,
--resume), and every recipe end to end. SIGKILL and broken checkpoints: test_crash_safety.py."""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import os
import re
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

import cli
from codec.audio import from_pretrained
from codec.checkpoint import MODEL_TYPES, load_checkpoint
from codec.errors import CodecError
from codec.quantization import QuantizerConfig, QuantizerOutput, build_quantizer
from codec.tokens import Tokenizer, TokenSpec
from codec.train import (TASKS, Objective, StepOutput, Task, TaskData, TrainConfig, Trainer, TrainingState,
                         load_train_config, read_recipe, run_training)
from codec.train.checkpoints import latest_checkpoint, read_checkpoint, save_checkpoint
from codec.train.config import OptimConfig, dump_train_config
from codec.train.logger import TrainLogger
from codec.train.optim import lr_factor

from .corpora import CORPORA, speech_pieces

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*/*.yaml"))
CODEC_RECIPES = [p for p in RECIPES if yaml.safe_load(p.read_text()).get("task", "audio_codec") == "audio_codec"]
LM_RECIPES = [p for p in RECIPES if yaml.safe_load(p.read_text()).get("task") in ("token_lm", "latent_lm")]
VISUAL_RECIPES = [p for p in RECIPES if p not in CODEC_RECIPES and p not in LM_RECIPES]

TINY_MODEL = {"sample_rate": 16000,
              "seanet": {"n_filters": 4, "dimension": 16, "ratios": [4, 2, 2], "lstm_layers": 1},
              "quantizer": {"n_q": 3, "codebook_size": 16, "kmeans_iters": 2}}
TINY_DISCRIMINATOR = {"kinds": ["msstft", "mpd", "mrd"], "msstft_filters": 2, "msstft_n_ffts": [128, 256],
                      "mpd_periods": [2, 3], "mpd_widths": [2, 4, 4], "mrd_filters": 2, "mrd_n_ffts": [256, 128]}


def tiny_recipe(data_dir: Path, **top) -> dict:
    recipe = {
        "model": copy.deepcopy(TINY_MODEL),
        "data": {"corpus": "folder", "data_dir": str(data_dir), "crop_seconds": 0.1, "valid_clips": 2,
                 "valid_seconds": 0.5},
        "losses": {"mel_weight": 1.0, "mel": {"window_lengths": [64, 256], "n_mels": [16, 32]}, "time_l1_weight": 0.1},
        "adversarial": {"discriminator": copy.deepcopy(TINY_DISCRIMINATOR), "warmup_steps": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "schedule": "cosine"},
        "steps": 4, "batch_size": 4, "log_every": 1, "valid_every": 2, "checkpoint_every": 2, "audio_examples": 1,
    }
    recipe.update(top)
    return recipe


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speech")
    for i, piece in enumerate(speech_pieces()):
        speaker = root / f"spk{i % 3}"
        speaker.mkdir(exist_ok=True)
        sf.write(speaker / f"clip{i}.flac", piece, 16000)
    return root


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The latest checkpoint's model and discriminator weights."""
    ckpt = latest_checkpoint(run_dir)
    discriminator = torch.load(ckpt / "state.pt", weights_only=True)["objective"]["discriminator"]
    return {**load_file(str(ckpt / "model" / "model.safetensors")),
            **{f"disc.{k}": v for k, v in discriminator.items()}}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


# --- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", CODEC_RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in CODEC_RECIPES])
def test_every_recipe_is_a_valid_config(recipe):
    config = load_train_config(yaml.safe_load(recipe.read_text()), data_dir="/data")
    assert config.data.corpus == recipe.parent.name and config.data.data_dir == "/data"
    assert (recipe.parent / "README.md").is_file()
    assert f"codec train recipes/{recipe.parent.name}/{recipe.name}" in (recipe.parent / "README.md").read_text()


@pytest.mark.parametrize("recipe", LM_RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in LM_RECIPES])
def test_every_lm_recipe_is_a_valid_config(recipe):
    config = load_train_config(yaml.safe_load(recipe.read_text()), ["data.shards=/tokens"])
    assert config.task in ("token_lm", "latent_lm") and config.data.shards == "/tokens"
    assert {yaml.safe_load(p.read_text())["task"] for p in LM_RECIPES} == {"token_lm", "latent_lm"}


@pytest.mark.parametrize("recipe", VISUAL_RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in VISUAL_RECIPES])
def test_every_image_and_video_recipe_is_a_valid_config_with_its_command_documented(recipe):
    config = load_train_config(yaml.safe_load(recipe.read_text()), [])
    assert config.task in ("image_tokenizer", "video_tokenizer", "image_generator")
    if config.task == "image_generator":  # generators name a shipped tokenizer of their dataset
        assert config.data.tokenizer in ("digits_conv", "digits_multiscale", "moving_digits")
    assert f"codec train {recipe.parent.name}/{recipe.stem}" in (recipe.parent / "README.md").read_text()


def test_overrides_are_typed_and_validated():
    config = load_train_config({}, ["optim.lr=1e-4", "model.quantizer.n_q=12", "data.gain_db=[-3, 3]",
                                    "adversarial.discriminator.kinds=[mpd]", "balancer=true"])
    assert config.optim.lr == 1e-4 and config.model.quantizer.n_q == 12
    assert config.data.gain_db == (-3.0, 3.0) and config.adversarial.discriminator.kinds == ("mpd",)
    assert config.balancer is True
    for override, message in [("optim.lrr=1", "unknown key config.optim.lrr"),
                              ("steps=many", "config.steps must be an integer"),
                              ("model.quantizer.kind=pq", "config.model.quantizer.kind must be one of .ema., .factorized., .fsq., .lfq."),
                              ("steps", "key=value")]:
        with pytest.raises(CodecError, match=message):
            load_train_config({}, [override])


def test_learning_rate_schedules():
    cosine = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cosine, 110) == pytest.approx(0.1) and lr_factor(9, cosine, 110) == pytest.approx(1.0)
    assert lr_factor(60, cosine, 110) == pytest.approx(0.55) and lr_factor(110, cosine, 110) == pytest.approx(0.1)
    exponential = OptimConfig(warmup_steps=0, schedule="exponential", gamma=0.9)
    assert lr_factor(3, exponential, 100) == pytest.approx(0.729)
    assert lr_factor(50, OptimConfig(schedule="constant"), 100) == 1.0


# --- one run, checkpoints, resume -------------------------------------------------------------

def test_training_writes_logs_checkpoints_and_a_usable_model(tmp_path, speech_folder):
    recipe = tiny_recipe(speech_folder, balancer=True, ema_decay=0.9, keep_checkpoints=1)
    recipe["losses"].update(phase_weight=0.5, phase={"n_fft": 128, "hop": 32},
                            complex_weight=0.5, complex={"n_fft": 256, "hop": 64, "fmax": 2000.0})
    config = load_train_config(recipe)
    results = Trainer(config, tmp_path / "run").fit()
    run = tmp_path / "run"
    assert {"mel_distance", "mel_distance_1q", "si_sdr"} <= results.keys() and np.isfinite(results["mel_distance"])
    assert load_train_config(yaml.safe_load((run / "config.yaml").read_text())) == config
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_00000004"]  # keep 1
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    phase = [e.value for e in events.Scalars("train/loss/phase")]  # every enabled loss is logged
    assert len(phase) == 4 and all(0 < v < 6 for v in phase)
    complex_ = [e.value for e in events.Scalars("train/loss/complex")]
    assert len(complex_) == 4 and all(0 < v <= 4 for v in complex_)
    model = from_pretrained(run / "best")
    assert model.config == config.model


def test_init_from_starts_a_new_run_from_a_models_weights(tmp_path, speech_folder):
    source = Trainer(load_train_config(tiny_recipe(speech_folder, steps=2, valid_every=100)), tmp_path / "a")
    source.fit()
    start = from_pretrained(tmp_path / "a" / "best").state_dict()
    config = load_train_config(tiny_recipe(speech_folder, steps=2, seed=5, init_from=str(tmp_path / "a" / "best")))
    tuned = Trainer(config, tmp_path / "b")
    for name, value in tuned.model.state_dict().items():
        assert torch.equal(value, start[name]), name
    fresh = Trainer(load_train_config(tiny_recipe(speech_folder, steps=2, seed=5)), tmp_path / "c")
    assert not all(torch.equal(v, start[k]) for k, v in fresh.model.state_dict().items())
    other = tiny_recipe(speech_folder, steps=2, init_from=str(tmp_path / "a" / "best"))
    other["model"]["seanet"]["n_filters"] = 8
    with pytest.raises(CodecError, match="not this run's architecture"):
        Trainer(load_train_config(other), tmp_path / "d")
    with pytest.raises(CodecError, match="no-such-model"):  # names resolve as --model does
        Trainer(load_train_config(tiny_recipe(speech_folder, init_from="no-such-model")), tmp_path / "e")


def test_init_modules_and_freeze_train_a_new_decoder_under_a_kept_encoder(tmp_path, speech_folder):
    source = Trainer(load_train_config(tiny_recipe(speech_folder, steps=2, valid_every=100)), tmp_path / "a")
    source.fit()
    start = from_pretrained(tmp_path / "a" / "best")
    recipe = tiny_recipe(speech_folder, steps=3, valid_every=100, seed=5, init_from=str(tmp_path / "a" / "best"),
                         init_modules=["encoder", "quantizer"], freeze=["encoder", "quantizer"], adversarial={})
    recipe["model"]["decoder"] = {"dim": 16, "intermediate_dim": 32, "n_layers": 2}  # an iSTFT decoder instead
    tuned = Trainer(load_train_config(recipe), tmp_path / "b")
    initial_decoder = {k: v.clone() for k, v in tuned.model.decoder.state_dict().items()}
    tuned.fit()
    for part in ("encoder", "quantizer"):  # taken from the source, then kept
        for name, value in getattr(tuned.model, part).state_dict().items():
            assert torch.equal(value, getattr(start, part).state_dict()[name]), (part, name)
    assert any(not torch.equal(v, initial_decoder[k]) for k, v in tuned.model.decoder.state_dict().items())
    bad = dict(recipe, freeze=["encoder", "decodr"])
    with pytest.raises(CodecError, match="no submodule 'decodr'.*encoder, decoder, quantizer"):
        Trainer(load_train_config(bad), tmp_path / "c")
    whole = dict(recipe, init_modules=[])  # the whole model must match: the decoders differ
    with pytest.raises(CodecError, match="not this run's architecture"):
        Trainer(load_train_config(whole), tmp_path / "d")
    with pytest.raises(CodecError, match="init_modules needs init_from"):
        load_train_config(dict(recipe, init_from=""))


def test_weight_ema_warms_up(tmp_path, speech_folder):
    """ema = d_t ema + (1 - d_t) w_t with d_t = min(decay, (1 + t) / (10 + t)): the initial
    random weights leave the average within a few steps instead of thousands."""
    config = load_train_config(tiny_recipe(speech_folder, ema_decay=0.999, steps=4, valid_every=100))
    trainer = Trainer(config, tmp_path / "run")
    expected = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    update = trainer.ema.update

    def checked_update(model, step) -> None:
        assert step == trainer.step
        decay = min(0.999, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            if name in expected:
                expected[name] = decay * expected[name] + (1 - decay) * value
        update(model, step)

    trainer.ema.update = checked_update
    trainer.fit()
    for name, value in expected.items():
        torch.testing.assert_close(trainer.ema.weights[name], value, rtol=1e-5, atol=1e-6)


def test_resume_continues_exactly(tmp_path, speech_folder):
    config = load_train_config(tiny_recipe(speech_folder, balancer=True, keep_checkpoints=5))
    Trainer(config, tmp_path / "straight").fit()
    # the same run as if it had stopped right after its step-2 checkpoint
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_00000004")
    (tmp_path / "resumed" / "checkpoints" / "latest").write_text("step_00000002\n")
    resumed = Trainer(config, tmp_path / "resumed", resume=True)
    assert resumed.step == 2 and resumed.scheduler.last_epoch == 2
    resumed.fit()
    assert latest_checkpoint(tmp_path / "resumed").name == "step_00000004"
    assert_same_weights(weights(tmp_path / "resumed"), weights(tmp_path / "straight"))


def test_ctrl_c_saves_and_stops(tmp_path, speech_folder, monkeypatch):
    config = load_train_config(tiny_recipe(speech_folder, steps=50, checkpoint_every=100, valid_every=100))
    trainer = Trainer(config, tmp_path / "run")
    step = trainer.train_step

    def interrupted_at_3(batch):
        if trainer.step == 2:
            signal.raise_signal(signal.SIGINT)
        return step(batch)

    monkeypatch.setattr(trainer, "train_step", interrupted_at_3)
    handler = signal.getsignal(signal.SIGINT)
    trainer.fit()
    assert latest_checkpoint(tmp_path / "run").name == "step_00000003"
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored


def test_non_finite_losses_skip_steps_then_abort(tmp_path, speech_folder, monkeypatch):
    config = load_train_config(tiny_recipe(speech_folder, max_nonfinite_steps=3, adversarial={}))
    trainer = Trainer(config, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if "codebook" not in k}
    compute = trainer.objective.compute

    def nan_mel(model, batch, step):
        out = compute(model, batch, step)
        out.losses["mel"] = out.losses["mel"] * float("nan")
        return out

    monkeypatch.setattr(trainer.objective, "compute", nan_mel)
    batch = trainer.valid_set[(0, 0)][None, :, :1600].repeat(4, 1, 1)
    assert trainer.train_step(batch) == {"nonfinite_steps": 1.0}
    assert trainer.train_step(batch) == {"nonfinite_steps": 2.0}
    after = trainer.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # no update was applied
    with pytest.raises(CodecError, match="Training diverged: 3 steps in a row had non-finite losses \\(mel\\)"):
        trainer.train_step(batch)


# --- distributed ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, recipe: dict, run_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from codec.train.distributed import shutdown_distributed

    trainer = Trainer(load_train_config(recipe), run_dir)
    trainer.fit()
    disc = trainer.objective.discriminator.state_dict() if trainer.objective.discriminator is not None else {}
    state = {**trainer.model.state_dict(), **{f"disc.{k}": v for k, v in disc.items()}}
    torch.save(state, f"{out}/rank{rank}.pt")
    shutdown_distributed()


@pytest.mark.slow
@pytest.mark.parametrize("balancer, steps", [(False, 1), (True, 3)])
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path, speech_folder, balancer, steps):
    """Both ranks end with identical weights. Against one process with the same global batch,
    the median weight difference stays below 1e-6 and the largest below 3 x lr: the all-reduce
    sums in another order than one process does, and Adam turns such rounding on a near-zero
    gradient (or on a near-tie code assignment) into a step of up to lr for that one weight."""
    adversarial = {"discriminator": copy.deepcopy(TINY_DISCRIMINATOR), "relative_feature_matching": False}
    recipe = tiny_recipe(speech_folder, steps=steps, valid_every=100, checkpoint_every=100, balancer=balancer,
                         adversarial=adversarial)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), recipe, str(tmp_path / "ddp"), str(tmp_path)),
                                nprocs=2, join=True)
    single = Trainer(load_train_config(recipe), tmp_path / "single")
    initial = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    discriminator = single.objective.discriminator.state_dict()
    expected = {**single.model.state_dict(), **{f"disc.{k}": v for k, v in discriminator.items()}}
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert_same_weights(rank0, rank1)  # ranks agree exactly
    lr = recipe["optim"]["lr"]
    diff = torch.cat([(rank0[k] - v).abs().flatten() for k, v in expected.items() if v.is_floating_point()])
    assert diff.median() < 1e-6 and diff.max() < 3 * lr, (diff.median(), diff.max())
    moved = max((expected[k] - v).abs().max() for k, v in initial.items() if v.is_floating_point())
    assert moved > lr / 2  # training did move the weights


# --- recipes end to end -----------------------------------------------------------------------

RECIPE_CORPORA = ["librispeech", "libritts", "vctk", "ljspeech", "commonvoice", "mls", "folder", "devspeech"]


TINY_OVERRIDES = [f"model={yaml.safe_dump(TINY_MODEL, default_flow_style=True).strip()}",
                  "steps=2", "batch_size=2", "valid_every=2", "checkpoint_every=2", "data.valid_clips=2",
                  "data.crop_seconds=0.1", "data.num_workers=0", "adversarial.discriminator=null",
                  "losses.mel.window_lengths=[64, 256]", "losses.mel.n_mels=[16, 32]"]


def invoke_train(*args: str, overrides: list[str] = ()):
    """`codec train ARGS --set OVERRIDE...` in the repository folder, in this process."""
    args = ["train", *args]
    for o in overrides:
        args += ["--set", o]
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return CliRunner().invoke(cli.app, args)
    finally:
        os.chdir(cwd)


def corpus_overrides(tree) -> list[str]:
    return [f"data.{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in tree.overrides.items()]


@pytest.mark.parametrize("corpus", RECIPE_CORPORA)
def test_recipe_prepares_and_trains_two_steps(tmp_path, corpus):
    tree = CORPORA[corpus](tmp_path / "data", speech_pieces())
    result = invoke_train(f"recipes/{corpus}/codec16k.yaml", "--data-dir", str(tree.root), "--run-dir",
                          str(tmp_path / "run"), overrides=TINY_OVERRIDES + corpus_overrides(tree))
    assert result.exit_code == 0, result.output + result.stderr
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert "final validation: mel_distance" in result.stdout


def test_train_help_lists_the_recipes():
    result = CliRunner().invoke(cli.app, ["train", "--help"])
    assert result.exit_code == 0
    for recipe in RECIPES:
        assert f"{recipe.parent.name}/{recipe.stem}" in result.stdout  # as a path or a shipped recipe's name


def test_bad_recipe_and_resume_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    for args, message in [(["train", str(bad)], "not valid YAML"),
                          (["train", str(tmp_path / "none.yaml")], "does not exist"),
                          (["train", "recipes/devspeech/codec16k.yaml", "--resume", "--run-dir", str(tmp_path / "r")],
                           "Nothing to resume")]:
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


# --- clear messages: empty corpora, devices, validation, the end of a run, --resume -------------

def _only_dev_clean(tmp: Path) -> tuple[Path, list[str]]:
    tree = CORPORA["librispeech"](tmp, speech_pieces())
    shutil.rmtree(tmp / "LibriSpeech" / "train-clean-100")
    return tree.root, ["data.valid_clips=1"]


def _validated_is_dev(tmp: Path) -> tuple[Path, list[str]]:
    """Common Voice trained on validated.tsv whose clips are all in dev.tsv: all are held out."""
    tree = CORPORA["commonvoice"](tmp, speech_pieces())
    lang = tmp / "cv-corpus-17.0-2024-03-15" / "en"
    (lang / "validated.tsv").write_text((lang / "dev.tsv").read_text())
    return tree.root, corpus_overrides(tree) + ["data.subsets=[validated]"]


def _too_short(tmp: Path) -> tuple[Path, list[str]]:
    return CORPORA["folder"](tmp, speech_pieces()).root, ["data.min_seconds=30"]


def _no_valid_clips(tmp: Path) -> tuple[Path, list[str]]:
    return CORPORA["folder"](tmp, speech_pieces()).root, ["data.valid_clips=0"]


@pytest.mark.parametrize("make, corpus, message", [
    (_only_dev_clean, "librispeech", r"LibriSpeech in '.*LibriSpeech' has no training part \(found: dev-clean\); "
                                     r"add one such as train-clean-100, or train on these with data\.subsets"),
    (_validated_is_dev, "commonvoice", r"No training clips are left for Common Voice in '.*data' \(validated for "
                                       r"training, dev for validation\): all 2 are among the 2 validation clips"),
    (_too_short, "folder", r"All 5 training clips of an audio folder in '.*my_audio' are shorter than "
                           r"data\.min_seconds \(30 s; the longest is 1\.3\d s\); lower data\.min_seconds"),
    (_no_valid_clips, "folder", r"Invalid training config: invalid config: data\.valid_clips must be at least 1: "
                                r"validation picks run_dir/best"),
], ids=["only-dev-clean", "all-held-out", "too-short", "no-validation"])
def test_a_corpus_leaving_no_training_or_validation_clip_is_one_clear_error(tmp_path, make, corpus, message):
    root, overrides = make(tmp_path / "data")
    result = invoke_train(f"recipes/{corpus}/codec16k.yaml", "--data-dir", str(root), "--run-dir",
                          str(tmp_path / "run"), overrides=TINY_OVERRIDES + overrides)
    assert result.exit_code == 1, result.output + result.stderr
    assert re.fullmatch(f"error: {message}.*\\.\n", result.stderr, re.S), result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("device, message", [
    ("banana", "Unknown device 'banana'; use cpu, cuda, cuda:N or auto."),
    ("cuda:99", "Device 'cuda:99' is not available"),
    pytest.param("cuda", "Device 'cuda' is not available: this machine has no usable CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_an_unusable_device_is_a_config_error(tmp_path, speech_folder, device, message):
    config = load_train_config(tiny_recipe(speech_folder, device=device))
    with pytest.raises(CodecError, match=f"^config.device: {re.escape(message)}"):
        Trainer(config, tmp_path / "run")


def test_validation_shows_progress_and_the_step_0_baseline_is_optional(tmp_path, speech_folder, capsys,
                                                                      monkeypatch):
    validated = []
    log_valid = TrainLogger.log_valid
    monkeypatch.setattr(TrainLogger, "log_valid", lambda self, step, m: validated.append(step) or log_valid(self, step, m))
    recipe = tiny_recipe(speech_folder, adversarial={}, steps=2, valid_every=100, checkpoint_every=100)
    Trainer(load_train_config(recipe), tmp_path / "a").fit()
    assert validated == [2]  # by default no baseline of the untrained model: a smoke run validates once
    err = capsys.readouterr().err
    assert re.search(r"validating: +0%.* 0/2 ", err), err  # a progress bar over the validation clips
    Trainer(load_train_config(recipe, ["valid_at_start=true"]), tmp_path / "b").fit()
    assert validated == [2, 0, 2]
    assert len(re.findall(r"validating: +0%", capsys.readouterr().err)) == 2


def test_the_end_of_a_run_says_where_the_model_is_and_a_finished_run_continues(tmp_path, speech_folder):
    recipe = tmp_path / "codec.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(speech_folder, adversarial={}, steps=2, valid_every=2,
                                                 optim={"lr": 1e-3, "schedule": "constant"})))
    run = tmp_path / "run"
    result = invoke_train(str(recipe), "--run-dir", str(run))
    assert result.exit_code == 0, result.output + result.stderr
    assert re.search(rf"training finished at step 2 of 2\n  best model: {re.escape(str(run / 'best'))} \(step 2, "
                     rf"mel_distance \d", result.stdout), result.stdout
    assert f"\n  last checkpoint: {run / 'checkpoints' / 'step_00000002'}\n" in result.stdout
    assert f"\n  to train further: codec train {recipe} --run-dir {run} --resume --set steps=4\n" in result.stdout
    finished = invoke_train(str(recipe), "--run-dir", str(run), "--resume")
    assert finished.exit_code == 1
    assert finished.stderr == (f"error: The run in {run} already finished at step 2 (steps: 2); to continue it, "
                               "raise steps, e.g. --resume --set steps=4.\n")
    longer = invoke_train(str(recipe), "--run-dir", str(run), "--resume", overrides=["steps=4"])
    assert longer.exit_code == 0, longer.output + longer.stderr
    assert "training finished at step 4 of 4" in longer.stdout
    assert latest_checkpoint(run).name == "step_00000004"
    run_training(recipe, tmp_path / "straight", ["steps=4"])  # the same as 4 steps at once
    assert_same_weights(load_file(str(latest_checkpoint(run) / "model" / "model.safetensors")),
                        load_file(str(latest_checkpoint(tmp_path / "straight") / "model" / "model.safetensors")))


def test_resume_says_exactly_what_is_missing(tmp_path, speech_folder):
    recipe = tmp_path / "codec.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(speech_folder, adversarial={})))
    with pytest.raises(CodecError, match=r"^Nothing to resume: the run folder .*nowhere does not exist; start the "
                                         r"run without --resume, or give its folder with --run-dir\.$"):
        run_training(recipe, tmp_path / "nowhere", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match=r"^Nothing to resume in .*empty: it has no config\.yaml, so no run was "
                                         r"started there; check --run-dir\.$"):
        run_training(recipe, tmp_path / "empty", resume=True)
    started = tmp_path / "started"
    (started / "checkpoints" / ".tmp-step_00000002-0123abcd").mkdir(parents=True)  # a save cut short
    (started / "config.yaml").write_text(dump_train_config(load_train_config(read_recipe(recipe))))
    with pytest.raises(CodecError, match=r"^Nothing to resume in .*started: the run stopped before its first "
                                         r"checkpoint \(at step 2\); run the same command without --resume to "
                                         r"start it again\.$"):
        run_training(recipe, started, resume=True)
    (started / "checkpoints" / "step_00000002").mkdir()
    with pytest.raises(CodecError, match=r"^Run folder .*started already holds checkpoints; pass --resume to "
                                         r"continue it or --run-dir to start a new run elsewhere\.$"):
        run_training(recipe, started)


# --- perceptual losses in training -------------------------------------------------------------

def test_perceptual_and_semantic_losses_train_and_resume(tmp_path, speech_folder, monkeypatch):
    """GE2E speaker + CREPE pitch on the decoder output, semantic distillation of level 1
    (a tiny random SSL model stands in for HuBERT): all logged, all finite; only the
    trainable projection is checkpointed, never the frozen networks."""
    import codec.losses.perceptual as perceptual

    from .test_perceptual_losses import tiny_wav2vec2

    ssl = tiny_wav2vec2(0)
    ssl_file = tmp_path / "ssl.pt"
    torch.save(ssl.state_dict(), ssl_file)
    real_loader = perceptual.load_ssl_model
    monkeypatch.setattr(perceptual, "load_ssl_model", lambda path, architecture, layer: real_loader(path, ssl, layer))
    recipe = tiny_recipe(speech_folder, steps=2, adversarial={}, balancer=True,
                         perceptual={"speaker_weight": 1.0, "pitch_weight": 1.0, "semantic_weight": 1.0,
                                     "semantic_model": str(ssl_file), "semantic_layer": 1})
    trainer = Trainer(load_train_config(recipe), tmp_path / "run")
    batch = trainer.valid_set[(0, 0)][None, :, :1600].repeat(4, 1, 1)
    metrics = trainer.train_step(batch)
    for name in ("loss/mel", "loss/speaker", "loss/pitch", "loss/semantic", "grad_share/speaker", "grad_share/pitch"):
        assert np.isfinite(metrics[name]) and metrics[name] > 0, name
    projection = trainer.objective.state_dict()["losses"]
    assert projection and all("semantic" in k for k in projection)
    trainer.step = 1
    trainer.save()
    state = torch.load(latest_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)
    assert state["objective"]["losses"].keys() == projection.keys()  # frozen networks are not saved
    resumed = Trainer(load_train_config(recipe), tmp_path / "run", resume=True)
    for k, v in projection.items():
        torch.testing.assert_close(resumed.objective.state_dict()["losses"][k], v)


# --- crop length: data.crop_seconds, once data.segment_seconds ---------------------------------

def test_the_crop_length_is_data_crop_seconds_and_the_old_name_still_loads():
    """data.segment_seconds (the training crop) is now data.crop_seconds, apart from the codec's
    own model.segment_seconds (coding segments of non-causal models), which keeps its name."""
    old = {"data": {"corpus": "folder", "segment_seconds": 0.3},
           "model": {"seanet": {"causal": False}, "segment_seconds": 0.5}}
    config = load_train_config(old)
    assert config.data.crop_seconds == 0.3 and config.model.segment_seconds == 0.5
    assert "segment_seconds" not in yaml.safe_load(dump_train_config(config))["data"]
    assert load_train_config({"data": {"corpus": "folder"}}, ["data.segment_seconds=0.2"]).data.crop_seconds == 0.2
    assert load_train_config(old, ["data.crop_seconds=0.2"]).data.crop_seconds == 0.2  # the override wins
    with pytest.raises(CodecError, match="config.data.segment_seconds is the old name of config.data.crop_seconds"):
        load_train_config({"data": {"corpus": "folder", "segment_seconds": 0.3, "crop_seconds": 0.5}})
    with pytest.raises(CodecError, match="config.data: crop_seconds must be > 0"):
        load_train_config({"data": {"corpus": "folder"}}, ["data.crop_seconds=0"])


def _as_version_1(checkpoint: Path) -> None:
    """Rewrite a checkpoint in the layout the trainer wrote before TrainingState: a flat state.pt,
    the discriminator and the EMA in their own safetensors files."""
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    objective, progress = state["objective"], state["progress"]
    save_file({k: v.contiguous() for k, v in objective["discriminator"].items()},
              str(checkpoint / "discriminator.safetensors"))
    if "ema" in state:
        save_file(state["ema"], str(checkpoint / "ema.safetensors"))
    old = {"objective": objective["losses"], "optimizer": state["optimizer"], "scheduler": state["scheduler"],
           "nonfinite_streak": progress["nonfinite_streak"], "best_valid": progress["best_valid"],
           "disc_optimizer": objective["disc_optimizer"], "disc_scheduler": objective["disc_scheduler"],
           "step": progress["step"], "rng": state["rng"]}
    if "balancer" in objective:
        old["balancer"] = objective["balancer"]
    torch.save(old, checkpoint / "state.pt")


def test_a_run_from_before_the_rename_resumes_exactly(tmp_path, speech_folder):
    """An old run folder: config.yaml with data.segment_seconds and no task, a version-1 checkpoint.
    `codec train --resume` reads both and ends where an uninterrupted run does."""
    recipe = tmp_path / "codec.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(speech_folder, balancer=True, ema_decay=0.9, keep_checkpoints=5)))
    run_training(recipe, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "old")
    shutil.rmtree(tmp_path / "old" / "checkpoints" / "step_00000004")
    (tmp_path / "old" / "checkpoints" / "latest").write_text("step_00000002\n")
    _as_version_1(tmp_path / "old" / "checkpoints" / "step_00000002")
    saved = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    del saved["task"]
    saved["data"]["segment_seconds"] = saved["data"].pop("crop_seconds")
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(saved))
    run_training(recipe, tmp_path / "old", resume=True)
    assert_same_weights(weights(tmp_path / "old"), weights(tmp_path / "straight"))
    ema = {k: torch.load(latest_checkpoint(run) / "state.pt", weights_only=True)["ema"]
           for k, run in (("old", tmp_path / "old"), ("straight", tmp_path / "straight"))}
    assert_same_weights(ema["old"], ema["straight"])


# --- one TrainingState for saving and resuming -------------------------------------------------

def _assert_same_state(a, b, where: str = "state") -> None:
    """Nested dicts / lists / tensors / plain values are equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_training_state_round_trip(tmp_path, speech_folder):
    """Everything a run is made of (model, EMA, optimizer, schedule, discriminator with its
    optimizer and schedule, balancer, progress, RNG) goes through one state_dict: into another
    trainer, and through a checkpoint on disk."""
    config = load_train_config(tiny_recipe(speech_folder, balancer=True, ema_decay=0.9, adversarial={
        "discriminator": copy.deepcopy(TINY_DISCRIMINATOR)}))
    trainer = Trainer(config, tmp_path / "a")
    batch = trainer.valid_set[(0, 0)][None, :, :1600].repeat(4, 1, 1)
    for _ in range(2):
        trainer.train_step(batch)
        trainer.step += 1
    trainer.state.progress.best_valid = 1.5
    state = trainer.state.state_dict()
    assert {"model", "ema", "optimizer", "scheduler", "objective", "progress", "rng"} <= state.keys()
    assert {"losses", "discriminator", "disc_optimizer", "disc_scheduler", "balancer"} == state["objective"].keys()
    saved = copy.deepcopy(state)
    torch.manual_seed(123)  # the RNG moves on; loading puts it back
    other = Trainer(dataclasses.replace(config, seed=1), tmp_path / "b")
    other.state.load_state_dict(copy.deepcopy(saved))
    _assert_same_state(other.state.state_dict(), saved)
    assert other.step == 2 and other.scheduler.last_epoch == 2
    save_checkpoint(tmp_path / "a", trainer.state)
    _assert_same_state(read_checkpoint(latest_checkpoint(tmp_path / "a")), trainer.state.state_dict())
    with pytest.raises(ValueError, match="not version 2 of 'toy_image'"):
        TrainingState("toy_image", trainer.model, trainer.optimizer, trainer.scheduler, trainer.objective).load_state_dict(saved)


# --- the same loop for any tokenizer: a toy image tokenizer ----------------------------------

@dataclass(frozen=True)
class ToyImageConfig:
    channels: int = 3
    size: int = 8  # size x size images, one token per pixel
    dim: int = 16
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(kind="fsq", fsq_levels=(5, 5, 5)))


class ToyImageTokenizer(Tokenizer):
    """Conv encoder -> FSQ over every pixel -> conv decoder: images [B, 3, 8, 8], codes [B, 1, 8, 8]."""

    model_type = "toy_image"
    config_class = ToyImageConfig

    def __init__(self, config: ToyImageConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.channels, config.dim
        self.encoder = nn.Sequential(nn.Conv2d(c, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, d, 1))
        self.quantizer = build_quantizer(d, config.quantizer)
        self.decoder = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, c, 1))

    @property
    def token_spec(self) -> TokenSpec:
        q = self.config.quantizer
        return TokenSpec("image", (math.prod(q.fsq_levels),), grid=(self.config.size,) * 2,
                         latent_dim=self.config.dim, residual=False, fsq_levels=q.fsq_levels)

    def set_num_codebooks(self, n_q: int) -> None:
        if n_q != 1:
            raise ValueError(f"this model has 1 codebook, not {n_q}")

    # the quantizer sees [B, D, H * W] (1-D latents work with every version of the quantizers)
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def quantize_latent(self, latent: torch.Tensor) -> torch.Tensor:
        return self.quantizer.encode(latent.flatten(2)).unflatten(-1, latent.shape[2:])

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer.decode(codes.flatten(2)).unflatten(-1, codes.shape[2:])

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        latent = self.encoder(x)
        q = self.quantizer(latent.flatten(2))
        return self.decoder(q.quantized.unflatten(-1, latent.shape[2:])), q


class ToyImages(torch.utils.data.Dataset):
    """Smooth colour images [3, 8, 8] in [-1, 1]: item (index, seed) is image ``index`` mirrored when seed is odd."""

    def __init__(self, count: int, first: int = 0) -> None:
        self.count, self.first = count, first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        corners = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(self.first + index)) * 2 - 1
        image = nn.functional.interpolate(corners, size=8, mode="bilinear", align_corners=True)[0]
        return image.flip(-1) if seed % 2 else image


class MSEObjective(Objective):
    def compute(self, model, batch, step):
        reconstruction, q = model(batch)
        return StepOutput({"mse": nn.functional.mse_loss(reconstruction, batch)},
                          {"codebook/usage_0": float(q.usage[0])}, reconstruction)


@torch.no_grad()
def validate_toy(model, images, logger, step, config) -> dict[str, float]:
    batch = torch.stack([images[i] for i in range(len(images))])
    reconstruction = model.decode(model.encode(batch))
    logger.add_image("valid/reconstruction", (reconstruction[0] + 1) / 2, step)
    results = {"mse": float(nn.functional.mse_loss(reconstruction, batch))}
    logger.log_valid(step, results)
    return results


@dataclass(frozen=True)
class ToyTrainConfig(TrainConfig):
    task: str = "toy_image"
    model: ToyImageConfig = field(default_factory=ToyImageConfig)
    images: int = 32


TOY_TASK = Task(
    name="toy_image", config_class=ToyTrainConfig, build_model=lambda config: ToyImageTokenizer(config.model),
    build_objective=lambda config, model, env: MSEObjective(),
    build_data=lambda config, run_dir, env: TaskData(ToyImages(config.images), ToyImages(8, first=1000)),
    validate=validate_toy, best_metric="mse",
)


@pytest.fixture
def toy_task(monkeypatch):
    monkeypatch.setitem(TASKS, "toy_image", f"{__name__}:TOY_TASK")
    monkeypatch.setitem(MODEL_TYPES, "toy_image", f"{__name__}:ToyImageTokenizer")


def test_an_image_tokenizer_trains_and_resumes_with_the_same_loop(tmp_path, toy_task, monkeypatch):
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "toy_image", "steps": 40, "batch_size": 8, "optim": {"lr": 3e-3, "schedule": "constant"},
        "ema_decay": 0.9, "log_every": 10, "valid_every": 20, "checkpoint_every": 10, "keep_checkpoints": 5}))
    config = load_train_config(read_recipe(recipe), ["images=16"])
    assert isinstance(config, ToyTrainConfig) and config.images == 16 and config.model.dim == 16
    with pytest.raises(CodecError, match="unknown key config.data"):
        load_train_config(read_recipe(recipe), data_dir="/data")  # no audio sections in this task
    losses = []
    step = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self, batch: losses.append(step(self, batch)) or losses[-1])
    run_training(recipe, tmp_path / "straight", ["images=16"])
    mse = [m["loss/mse"] for m in losses]
    assert len(mse) == 40 and np.mean(mse[-5:]) < 0.5 * np.mean(mse[:5]), mse
    model = load_checkpoint(latest_checkpoint(tmp_path / "straight") / "model")
    assert isinstance(model, ToyImageTokenizer) and model.config == config.model
    best = load_checkpoint(tmp_path / "straight" / "best")
    assert best.encode(ToyImages(2)[0][None]).shape == (1, 1, 8, 8)
    # --resume from step 20 ends where the uninterrupted run does
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    for later in ("step_00000030", "step_00000040"):
        shutil.rmtree(tmp_path / "resumed" / "checkpoints" / later)
    (tmp_path / "resumed" / "checkpoints" / "latest").write_text("step_00000020\n")
    run_training(recipe, tmp_path / "resumed", resume=True)
    final = {run: latest_checkpoint(tmp_path / run) for run in ("straight", "resumed")}
    assert final["resumed"].name == "step_00000040"
    assert_same_weights(load_file(str(final["resumed"] / "model" / "model.safetensors")),
                        load_file(str(final["straight"] / "model" / "model.safetensors")))
    ema = {run: torch.load(path / "state.pt", weights_only=True)["ema"] for run, path in final.items()}
    assert_same_weights(ema["resumed"], ema["straight"])


def test_unknown_task_is_a_config_error():
    with pytest.raises(CodecError, match="config.task must be one of 'audio_codec'"):
        load_train_config({"task": "video"})
    with pytest.raises(CodecError, match="config.task must be one of"):
        load_train_config({}, ["task=video"])


def test_the_training_loop_imports_no_audio_code():
    """Only the tasks' own modules (audio_*.py, visual_*.py) may import modality, losses, discriminators or
    eval code, and the image/video task none of the audio codec's."""
    forbidden = ("codec.audio", "codec.losses", "codec.discriminators", "codec.eval", "codec.data.dataset",
                 "codec.train.audio_", "codec.image", "codec.video", "codec.train.visual_")
    audio_only = ("codec.audio", "codec.data.dataset", "codec.train.audio_")
    for path in sorted((REPO / "codec" / "train").glob("*.py")):
        if path.name.startswith("audio_"):
            continue
        if path.name.startswith("visual_"):
            forbidden_here = audio_only
        else:
            forbidden_here = forbidden
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                package = ["codec", "train"][: 3 - node.level] if node.level else []  # . = codec.train, .. = codec
                names = [".".join(package + ([node.module] if node.module else []))]
                names += [f"{names[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            bad = [n for n in names if n.startswith(forbidden_here)]
            assert not bad, f"{path.name} imports {bad[0]}"
