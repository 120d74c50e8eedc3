"""Crash-safe runs: a run killed with SIGKILL anywhere, inside checkpoint writes too, resumes to
the result of an uninterrupted run; broken checkpoints and run configs are named in the error, or
skipped for the newest intact checkpoint with a warning that names them.

Kills inside a save go through the test hook CODEC_TEST_KILL_AT=<phase>@<step> of
``codec.train.checkpoints`` (one per phase of a save); others come at random moments from outside.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from codec.errors import CodecError
from codec.train import Trainer, load_train_config, read_recipe, run_training
from codec.train import checkpoints
from codec.train.checkpoints import SAVE_PHASES, latest_checkpoint, read_checkpoint, save_checkpoint

from .test_train import REPO, _assert_same_state, speech_folder, tiny_recipe  # noqa: F401 (a fixture)


def quick_recipe(speech: Path, **top) -> dict:
    """The tiny codec without a discriminator (a step takes milliseconds), at a constant learning
    rate (a run continued with a larger `steps` equals one started with it)."""
    return tiny_recipe(speech, adversarial={}, valid_every=100, optim={"lr": 1e-3, "schedule": "constant"}, **top)


def write_recipe(folder: Path, recipe: dict) -> Path:
    path = folder / "tiny" / "codec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("step_"))


def assert_resumable(run: Path) -> int:
    """`latest` names a complete checkpoint that loads; its step."""
    latest = latest_checkpoint(run)
    assert latest is not None, sorted(p.name for p in (run / "checkpoints").iterdir())
    assert read_checkpoint(latest)["progress"]["step"] == step_of(latest)
    return step_of(latest)


def pointer(run: Path) -> str:
    """What `latest` says (a cheap look while a run writes: it is replaced atomically)."""
    return (run / "checkpoints" / "latest").read_text()


# --- SIGKILL anywhere, then --resume ------------------------------------------------------------

def codec_train(recipe: Path, run: Path, resume: bool, kill_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("CODEC_TEST_KILL_AT", None)
    if kill_at:
        env["CODEC_TEST_KILL_AT"] = kill_at
    args = [sys.executable, "-m", "cli", "train", str(recipe), "--run-dir", str(run)] + ["--resume"] * resume
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_equals_an_uninterrupted_run(tmp_path, speech_folder):
    recipe = write_recipe(tmp_path, quick_recipe(speech_folder, steps=12, checkpoint_every=1, keep_checkpoints=2))
    run_training(recipe, tmp_path / "straight")
    run = tmp_path / "killed"
    # killed inside a save, at each of its phases (one step apart): latest always names one that loads
    for i, phase in enumerate(SAVE_PHASES):
        step = 3 + i
        proc = codec_train(recipe, run, resume=i > 0, kill_at=f"{phase}@{step}")
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == -signal.SIGKILL, out
        assert assert_resumable(run) == (step if phase == "pointer_written" else step - 1), phase  # the commit
        if phase in ("model_written", "state_written"):  # an unpublished folder is left behind
            assert any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
    # killed at a random moment: a checkpoint is written every step, so likely inside a save
    before = pointer(run)
    proc = codec_train(recipe, run, resume=True)
    deadline = time.time() + 180
    while proc.poll() is None and pointer(run) == before and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random(1234).uniform(0.0, 0.3))
    proc.kill()
    proc.communicate(timeout=60)
    assert assert_resumable(run) < 12, "the run finished before it could be killed"
    proc = codec_train(recipe, run, resume=True)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "training finished at step 12 of 12" in out
    assert assert_resumable(run) == 12
    _assert_same_state(read_checkpoint(latest_checkpoint(run)), read_checkpoint(latest_checkpoint(tmp_path / "straight")))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000011", "step_00000012"]


# --- one save, step by step ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, speech_folder) -> tuple[Path, Path]:
    """(recipe, run folder) of a 4-step run with checkpoints at steps 2 and 4."""
    tmp = tmp_path_factory.mktemp("finished")
    recipe = write_recipe(tmp, quick_recipe(speech_folder, steps=4, checkpoint_every=2, keep_checkpoints=5))
    run_training(recipe, tmp / "run")
    return recipe, tmp / "run"


@pytest.fixture
def run_copy(tmp_path, finished_run) -> tuple[Path, Path]:
    recipe, run = finished_run
    shutil.copytree(run, tmp_path / "run")
    return recipe, tmp_path / "run"


def trainer_at(recipe: Path, run: Path, *overrides: str, resume: bool = True) -> Trainer:
    return Trainer(load_train_config(read_recipe(recipe), list(overrides)), run, resume=resume)


def test_a_failed_save_keeps_the_previous_checkpoint(run_copy, monkeypatch):
    recipe, run = run_copy
    trainer = trainer_at(recipe, run, "steps=6")
    trainer.step = 5

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(CodecError, match=r"^Cannot write checkpoint .*step_00000005 \(No space left on device\)\.$"):
        trainer.save()
    assert latest_checkpoint(run).name == "step_00000004"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000004"]


def test_leftovers_of_a_crashed_save_break_neither_the_next_save_nor_resume(run_copy):
    recipe, run = run_copy
    root = run / "checkpoints"
    partial = root / ".tmp-step_00000006-0123abcd"  # a save killed half-way
    shutil.copytree(root / "step_00000004", partial)
    (partial / "state.pt").write_bytes((partial / "state.pt").read_bytes()[:100])
    shutil.copytree(root / "step_00000002", root / ".old-step_00000002-4567cdef")  # a replaced step, not yet deleted
    trainer = trainer_at(recipe, run, "steps=6")
    assert trainer.step == 4
    trainer.fit()
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002", "step_00000004", "step_00000006"]
    assert assert_resumable(run) == 6


def test_saving_a_step_again_replaces_it_and_pruning_spares_the_newest(run_copy):
    recipe, run = run_copy
    trainer = trainer_at(recipe, run, "steps=6")
    trainer.state.progress.best_valid = 0.5
    save_checkpoint(run, trainer.state, keep=1)  # step 4 again (e.g. Ctrl-C right after its checkpoint)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000004"]
    assert read_checkpoint(latest_checkpoint(run))["progress"]["best_valid"] == 0.5
    # resumed from an older checkpoint, a run never deletes the newer ones it has not reached yet
    shutil.copytree(run / "checkpoints" / "step_00000004", run / "checkpoints" / "step_00000009")
    trainer.step = 3
    save_checkpoint(run, trainer.state, keep=1)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000003", "step_00000004",
                                                                      "step_00000009"]
    assert latest_checkpoint(run).name == "step_00000003"


# --- broken checkpoints: named, and skipped for an older intact one -----------------------------

def _edit_state(folder: Path, **changes) -> None:
    state = torch.load(folder / "state.pt", weights_only=True)
    torch.save({**state, **changes}, folder / "state.pt")


BROKEN = {  # how the newest checkpoint breaks -> what the warning says
    "truncated state.pt": (lambda c: (c / "state.pt").write_bytes((c / "state.pt").read_bytes()[:2000]),
                           "Checkpoint file '{c}/state.pt' cannot be read (truncated or corrupt: "),
    "garbage weights": (lambda c: (c / "model" / "model.safetensors").write_bytes(b"\x93garbage" * 40),
                        "Checkpoint file '{c}/model/model.safetensors' cannot be read (truncated or corrupt: "),
    "no state.pt": (lambda c: (c / "state.pt").unlink(), "Checkpoint {c} is incomplete: it has no state.pt."),
    "no weights": (lambda c: shutil.rmtree(c / "model"),
                   "Checkpoint {c} is incomplete: it has no model/model.safetensors."),
    "another task": (lambda c: _edit_state(c, task="toy_image"),
                     "Checkpoint {c} does not fit this run: it holds version 2 training state of task 'toy_image', "
                     "not version 2 of 'audio_codec'."),
    "a future version": (lambda c: _edit_state(c, version=3),
                         "Checkpoint {c} does not fit this run: it holds version 3 training state"),
    "not a state": (lambda c: torch.save([1, 2, 3], c / "state.pt"),
                    "Checkpoint file '{c}/state.pt' does not hold a training state."),
    "a pickled object": (lambda c: torch.save({"x": Path("x")}, c / "state.pt"),
                         "Checkpoint file '{c}/state.pt' cannot be read (it holds objects other than tensors"),
    "another optimizer": (lambda c: _edit_state(c, optimizer={"state": {}, "param_groups": []}),
                      "Checkpoint {c} does not fit this run: "),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_checkpoint_is_named_and_the_older_one_resumes(run_copy, caplog, case):
    recipe, run = run_copy
    newest, older = run / "checkpoints" / "step_00000004", run / "checkpoints" / "step_00000002"
    breaks, message = BROKEN[case]
    breaks(newest)
    message = message.format(c=newest)
    with caplog.at_level("WARNING"):
        trainer = trainer_at(recipe, run, "steps=6")
    assert trainer.step == 2
    assert message in caplog.text and f"Resuming from the older checkpoint {older} instead." in caplog.text
    breaks(older)
    with pytest.raises(CodecError) as info:
        trainer_at(recipe, run, "steps=6")
    assert str(info.value).startswith(message.rstrip(".")), str(info.value)
    assert str(info.value).endswith("; the older checkpoint cannot be loaded either (step_00000002).")


@pytest.mark.parametrize("pointer, problem", [
    (b"step_00000009\n", "'{run}/checkpoints/latest' names step_00000009, which does not exist."),
    (b"\x00\xff../../etc\n", "'{run}/checkpoints/latest' does not name a checkpoint: it holds "),
])
def test_a_broken_latest_pointer_falls_back_to_the_newest_checkpoint(run_copy, caplog, pointer, problem):
    recipe, run = run_copy
    (run / "checkpoints" / "latest").write_bytes(pointer)
    with caplog.at_level("WARNING"):
        trainer = trainer_at(recipe, run, "steps=6")
    assert trainer.step == 4
    assert problem.format(run=run) in caplog.text
    assert f"Resuming from the newest checkpoint {run / 'checkpoints' / 'step_00000004'} instead." in caplog.text
    trainer.fit()  # and the run goes on as usual
    assert latest_checkpoint(run).name == "step_00000006"


def test_a_fallback_resume_ends_where_an_uninterrupted_run_does(run_copy, tmp_path):
    recipe, run = run_copy
    (run / "checkpoints" / "step_00000004" / "state.pt").write_bytes(b"")
    trainer_at(recipe, run, "steps=6").fit()
    straight = trainer_at(recipe, tmp_path / "straight", "steps=6", resume=False)
    straight.fit()
    _assert_same_state(read_checkpoint(latest_checkpoint(run)), read_checkpoint(latest_checkpoint(tmp_path / "straight")))


# --- the run's config.yaml ----------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("config_version: 99\nsteps: 6\n", "Invalid training config in '{cfg}': config_version 99 is from a newer "
                                       "version of codec (this one reads up to 1); upgrade codec to use it."),
    ("config_version: two\n", "Invalid training config in '{cfg}': config_version must be a positive integer, "
                                "got 'two'."),
    ("steps: 6\nbogus: 1\n", "Invalid training config in '{cfg}': unknown key config.bogus (known: "),
    ("steps: [6\n", "Run config {cfg} is not valid YAML ("),
    ("- steps\n", "Run config {cfg} must be a YAML mapping of config sections."),
])
def test_a_broken_run_config_is_named(run_copy, text, problem):
    recipe, run = run_copy
    (run / "config.yaml").write_text(text)
    with pytest.raises(CodecError) as info:
        run_training(recipe, run, resume=True)
    assert str(info.value).startswith(problem.format(cfg=run / "config.yaml")), str(info.value)


def test_the_run_config_records_its_format(finished_run):
    _, run = finished_run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert next(iter(saved)) == "config_version" and saved["config_version"] == 1
    assert re.fullmatch(r"\d+", str(saved["steps"]))
