"""Training: config overrides, schedules, checkpoints, resume (also after SIGKILL), Ctrl-C,
non-finite losses, distributed data parallel equivalence, and every recipe end to end."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import cli
from codec.audio import from_pretrained
from codec.errors import CodecError
from codec.train import Trainer, load_train_config
from codec.train.checkpoints import latest_checkpoint
from codec.train.config import OptimConfig
from codec.train.optim import lr_factor

from .corpora import CORPORA, speech_pieces

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*/*.yaml"))

TINY_MODEL = {"sample_rate": 16000,
              "seanet": {"n_filters": 4, "dimension": 16, "ratios": [4, 2, 2], "lstm_layers": 1},
              "quantizer": {"n_q": 3, "codebook_size": 16, "kmeans_iters": 2}}
TINY_DISCRIMINATOR = {"kinds": ["msstft", "mpd", "mrd"], "msstft_filters": 2, "msstft_n_ffts": [128, 256],
                      "mpd_periods": [2, 3], "mpd_widths": [2, 4, 4], "mrd_filters": 2, "mrd_n_ffts": [256, 128]}


def tiny_recipe(data_dir: Path, **top) -> dict:
    recipe = {
        "model": copy.deepcopy(TINY_MODEL),
        "data": {"corpus": "folder", "data_dir": str(data_dir), "segment_seconds": 0.1, "valid_clips": 2,
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
    ckpt = latest_checkpoint(run_dir)
    return {**load_file(str(ckpt / "model" / "model.safetensors")),
            **{f"disc.{k}": v for k, v in load_file(str(ckpt / "discriminator.safetensors")).items()}}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


# --- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in RECIPES])
def test_every_recipe_is_a_valid_config(recipe):
    config = load_train_config(yaml.safe_load(recipe.read_text()), data_dir="/data")
    assert config.data.corpus == recipe.parent.name and config.data.data_dir == "/data"
    assert (recipe.parent / "README.md").is_file()
    assert f"codec train recipes/{recipe.parent.name}/{recipe.name}" in (recipe.parent / "README.md").read_text()


def test_overrides_are_typed_and_validated():
    config = load_train_config({}, ["optim.lr=1e-4", "model.quantizer.n_q=12", "data.gain_db=[-3, 3]",
                                    "adversarial.discriminator.kinds=[mpd]", "balancer=true"])
    assert config.optim.lr == 1e-4 and config.model.quantizer.n_q == 12
    assert config.data.gain_db == (-3.0, 3.0) and config.adversarial.discriminator.kinds == ("mpd",)
    assert config.balancer is True
    for override, message in [("optim.lrr=1", "unknown key config.optim.lrr"),
                              ("steps=many", "config.steps must be an integer"),
                              ("model.quantizer.kind=lfq", "config.model.quantizer.kind must be one of .ema., .factorized., .fsq."),
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
    config = load_train_config(tiny_recipe(speech_folder, balancer=True, ema_decay=0.9, keep_checkpoints=1))
    results = Trainer(config, tmp_path / "run").fit()
    run = tmp_path / "run"
    assert {"mel_distance", "mel_distance_1q", "si_sdr"} <= results.keys() and np.isfinite(results["mel_distance"])
    assert load_train_config(yaml.safe_load((run / "config.yaml").read_text())) == config
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_00000004"]  # keep 1
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    model = from_pretrained(run / "best")
    assert model.config == config.model


def test_weight_ema_warms_up(tmp_path, speech_folder):
    """ema = d_t ema + (1 - d_t) w_t with d_t = min(decay, (1 + t) / (10 + t)): the initial
    random weights leave the average within a few steps instead of thousands."""
    config = load_train_config(tiny_recipe(speech_folder, ema_decay=0.999, steps=4, valid_every=100))
    trainer = Trainer(config, tmp_path / "run")
    expected = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    update = trainer._update_ema

    def checked_update() -> None:
        decay = min(0.999, (1 + trainer.step) / (10 + trainer.step))
        for name, value in trainer.model.state_dict().items():
            if name in expected:
                expected[name] = decay * expected[name] + (1 - decay) * value
        update()

    trainer._update_ema = checked_update
    trainer.fit()
    for name, value in expected.items():
        torch.testing.assert_close(trainer.ema[name], value, rtol=1e-5, atol=1e-6)


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
    forward = trainer.objective.forward

    def nan_mel(out, target, discriminator=None):
        terms = forward(out, target, discriminator)
        terms.balanced["mel"] = terms.balanced["mel"] * float("nan")
        return terms

    monkeypatch.setattr(trainer.objective, "forward", nan_mel)
    batch = trainer.valid_set[(0, 0)][None, :, :1600].repeat(4, 1, 1)
    assert trainer.train_step(batch) == {"nonfinite_steps": 1.0}
    assert trainer.train_step(batch) == {"nonfinite_steps": 2.0}
    after = trainer.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # no update was applied
    with pytest.raises(CodecError, match="Training diverged: 3 steps in a row had non-finite losses \\(mel\\)"):
        trainer.train_step(batch)


def codec_train(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, speech_folder):
    recipe = tmp_path / "tiny" / "codec.yaml"
    recipe.parent.mkdir()
    recipe.write_text(yaml.safe_dump(tiny_recipe(speech_folder, steps=30, checkpoint_every=5, valid_every=100)))
    straight = codec_train(str(recipe), "--run-dir", str(tmp_path / "straight"))
    killed = codec_train(str(recipe), "--run-dir", str(tmp_path / "killed"))
    deadline = time.time() + 240
    while latest_checkpoint(tmp_path / "killed") is None and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    stopped_at = int(latest_checkpoint(tmp_path / "killed").name.split("_")[1])
    assert 5 <= stopped_at < 30
    # a new run in the same folder refuses to overwrite it
    refused = codec_train(str(recipe), "--run-dir", str(tmp_path / "killed"))
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode == 1 and "pass --resume" in out
    resumed = codec_train(str(recipe), "--run-dir", str(tmp_path / "killed"), "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert straight.wait(timeout=300) == 0
    assert latest_checkpoint(tmp_path / "killed").name == "step_00000030"
    assert_same_weights(weights(tmp_path / "killed"), weights(tmp_path / "straight"))


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
    disc = trainer.discriminator.state_dict() if trainer.discriminator is not None else {}
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
    expected = {**single.model.state_dict(), **{f"disc.{k}": v for k, v in single.discriminator.state_dict().items()}}
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


@pytest.mark.parametrize("corpus", RECIPE_CORPORA)
def test_recipe_prepares_and_trains_two_steps(tmp_path, corpus):
    tree = CORPORA[corpus](tmp_path / "data", speech_pieces())
    overrides = [f"model={yaml.safe_dump(TINY_MODEL, default_flow_style=True).strip()}",
                 "steps=2", "batch_size=2", "valid_every=2", "checkpoint_every=2", "data.valid_clips=2",
                 "data.segment_seconds=0.1", "data.num_workers=0", "adversarial.discriminator=null",
                 "losses.mel.window_lengths=[64, 256]", "losses.mel.n_mels=[16, 32]"]
    overrides += [f"data.{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in tree.overrides.items()]
    args = ["train", f"recipes/{corpus}/codec16k.yaml", "--data-dir", str(tree.root), "--run-dir", str(tmp_path / "run")]
    for o in overrides:
        args += ["--set", o]
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        result = CliRunner().invoke(cli.app, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output + result.stderr
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert "final validation: mel_distance" in result.stdout


def test_train_help_lists_the_recipes():
    result = CliRunner().invoke(cli.app, ["train", "--help"])
    assert result.exit_code == 0
    for recipe in RECIPES:
        assert f"recipes/{recipe.parent.name}/{recipe.name}" in result.stdout


def test_bad_recipe_and_resume_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    for args, message in [(["train", str(bad)], "not valid YAML"),
                          (["train", str(tmp_path / "none.yaml")], "does not exist"),
                          (["train", "recipes/devspeech/codec16k.yaml", "--resume", "--run-dir", str(tmp_path / "r")],
                           "Nothing to resume")]:
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


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
    projection = trainer.objective.trainable_state_dict()
    assert projection and all("semantic" in k for k in projection)
    trainer.step = 1
    trainer.save()
    state = torch.load(latest_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)
    assert state["objective"].keys() == projection.keys()  # frozen networks are not saved
    resumed = Trainer(load_train_config(recipe), tmp_path / "run", resume=True)
    for k, v in projection.items():
        torch.testing.assert_close(resumed.objective.trainable_state_dict()[k], v)
