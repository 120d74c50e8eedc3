"""Training checkpoints inside a run folder: written atomically, resumable after any crash.

    run_dir/checkpoints/step_00000200/
        model/          the tokenizer (codec.checkpoint.save_pretrained: config.json + model.safetensors)
        state.pt        the rest of the TrainingState (tensors and plain data only)
    run_dir/checkpoints/latest      name of the newest complete checkpoint
    run_dir/best/                   the model with the best validation score

A save goes through these phases (``SAVE_PHASES``); a crash at any point, even SIGKILL, leaves
``latest`` naming a complete checkpoint (or no ``latest`` before the first save):

    model_written    a new hidden folder .tmp-step_N-<random> holds model/
    state_written    ... and state.pt, both flushed to disk
    renamed          it is step_N (a step_N saved before went to .old-step_N-<random>; the trainer
                     never saves the step ``latest`` names again, which would leave it naming nothing
                     between the two renames: a resume would then fall back to an older checkpoint)
    pointer_written  ``latest`` (a temporary file renamed over it) names step_N: the save counts from here
    then             checkpoints older than the newest ``keep``, and hidden leftovers of earlier
                     crashes, are deleted; newer step folders (a run resumed from an older one) are kept

Resuming (``load_newest``) takes the checkpoint ``latest`` names. If it cannot be loaded (a disk
error, a hand-edited folder, ``latest`` naming nothing), the newest older checkpoint that loads
is used instead, with a warning that names the broken file: data are a function of the step, so
the run replays the lost steps exactly. If none loads, the error names the newest one's problem.

Checkpoints written before TrainingState (no "version" in state.pt) kept the EMA and the
discriminator in ``ema.safetensors`` / ``discriminator.safetensors``; ``read_checkpoint`` returns
those files' weights under their names for the task to upgrade.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import secrets
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..checkpoint import WEIGHTS_FILE, save_pretrained
from ..errors import CodecError
from .state import TrainingState

log = logging.getLogger(__name__)

LATEST = "latest"
STATE_FILE = "state.pt"
SAVE_PHASES = ("model_written", "state_written", "renamed", "pointer_written")
_NAME = re.compile(r"step_(\d{8,})")


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(run_dir: Path, state: TrainingState, keep: int = 3) -> Path:
    """Write the checkpoint of ``state``'s step atomically, point ``latest`` at it, keep the newest ``keep``."""
    step = state.progress.step
    root = run_dir / "checkpoints"
    final, tag = root / step_name(step), secrets.token_hex(4)
    tmp = root / f".tmp-{final.name}-{tag}"
    try:
        tmp.mkdir(parents=True)
        save_pretrained(state.model, tmp / "model", {"step": str(step)})
        _test_kill_point("model_written", step)
        torch.save({k: v for k, v in state.state_dict().items() if k != "model"}, tmp / STATE_FILE)  # weights: model/
        _flush(tmp)
        _test_kill_point("state_written", step)
        if final.exists():  # the same step again: set the old one aside, deleted with the leftovers below
            os.replace(final, root / f".old-{final.name}-{tag}")
        os.replace(tmp, final)
        _test_kill_point("renamed", step)
        _write_pointer(root, final.name)
        _test_kill_point("pointer_written", step)
    except BaseException as e:  # (a SIGKILL leaves tmp behind: the next save deletes it)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise CodecError(f"Cannot write checkpoint {final} ({e.strerror or e}).") from None
        raise
    for old in [p for p in root.iterdir() if p.name.startswith((".tmp-", ".old-"))] + _older(root, step, keep):
        shutil.rmtree(old, ignore_errors=True)
    return final


def _older(root: Path, step: int, keep: int) -> list[Path]:
    """The step folders before ``step`` beyond the newest ``keep`` (``step``'s own included)."""
    older = [p for p in checkpoint_folders(root.parent) if _step_of(p) < step]  # newest first
    return older[max(keep - 1, 0):]


def _write_pointer(root: Path, name: str) -> None:
    tmp = root / f".{LATEST}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / LATEST)
    finally:
        tmp.unlink(missing_ok=True)


def _flush(folder: Path) -> None:
    """fsync every file under ``folder``: a rename must never publish data still only in memory."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _test_kill_point(phase: str, step: int) -> None:
    """Tests kill the process at one phase of one save with CODEC_TEST_KILL_AT=<phase>@<step>."""
    if os.environ.get("CODEC_TEST_KILL_AT") == f"{phase}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# --- finding and reading checkpoints ------------------------------------------------------------

def _step_of(folder: Path) -> int:
    return int(_NAME.fullmatch(folder.name).group(1))


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """The run's step_* folders, newest first (complete or not)."""
    root = run_dir / "checkpoints"
    folders = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and p.is_dir()] if root.is_dir() else []
    return sorted(folders, key=_step_of, reverse=True)


def has_checkpoints(run_dir: Path) -> bool:
    """Whether the run has saved a checkpoint (a ``latest`` pointer or a step folder), usable or not."""
    return (run_dir / "checkpoints" / LATEST).exists() or bool(checkpoint_folders(run_dir))


def _pointer(run_dir: Path) -> tuple[Path | None, str | None]:
    """(the folder ``latest`` names, or None; the problem with ``latest``, or None)."""
    file = run_dir / "checkpoints" / LATEST
    if not file.is_file():
        return None, (f"'{file}' is missing." if checkpoint_folders(run_dir) else None)
    text = file.read_bytes().decode("utf-8", errors="replace").strip()
    if not _NAME.fullmatch(text):
        return None, f"'{file}' does not name a checkpoint: it holds {text[:40]!r}."
    if not (file.parent / text).is_dir():
        return None, f"'{file}' names {text}, which does not exist."
    return file.parent / text, None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` names, if it has a model and a state file (None otherwise)."""
    path, _ = _pointer(run_dir)
    return path if path is not None and (path / STATE_FILE).is_file() and (path / "model").is_dir() else None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The saved training state (a ``TrainingState.state_dict()``, or a version-1 one), on the CPU;
    a CodecError naming the file that is missing, truncated or not a training state."""
    state_file, weights = path / STATE_FILE, path / "model" / WEIGHTS_FILE
    for file in (state_file, weights):
        if not file.is_file():
            raise CodecError(f"Checkpoint {path} is incomplete: it has no {file.relative_to(path)}.")
    state = _load(state_file, lambda f: torch.load(f, map_location="cpu", weights_only=True))
    if not isinstance(state, dict):
        raise CodecError(f"Checkpoint file '{state_file}' does not hold a training state.")
    state["model"] = _load(weights, lambda f: load_file(str(f)))
    if "version" not in state:  # version 1: more weights in <name>.safetensors
        state.update({p.stem: _load(p, lambda f: load_file(str(f))) for p in sorted(path.glob("*.safetensors"))})
    return state


def _load(file: Path, load: Callable[[Path], Any]) -> Any:
    try:
        return load(file)
    except pickle.UnpicklingError as e:  # weights_only refused an object
        reason = f"it holds objects other than tensors and plain data: {_first_line(e)}"
    except (OSError, RuntimeError, ValueError, EOFError, SafetensorError) as e:
        reason = f"truncated or corrupt: {_first_line(e)}"
    raise CodecError(f"Checkpoint file '{file}' cannot be read ({reason}).")


def _first_line(e: Exception) -> str:
    """The first sentence of an error's message, on one line."""
    return " ".join(str(e).split()).split(". ")[0][:160] or type(e).__name__


def load_newest(run_dir: Path, load: Callable[[Path], None]) -> Path:
    """Resume from the newest checkpoint that ``load`` (a CodecError if it cannot) accepts: the
    one ``latest`` names, else the newest older one, with a warning naming what was skipped."""
    named, pointer_problem = _pointer(run_dir)
    candidates = checkpoint_folders(run_dir)
    if named is not None:
        candidates = [named] + [p for p in candidates if _step_of(p) < _step_of(named)]
    failures: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            load(path)
        except CodecError as e:
            failures.append((path, str(e)))
            continue
        skipped = [pointer_problem] * bool(pointer_problem) + [problem for _, problem in failures]
        if skipped:
            which = "older" if failures else "newest"
            log.warning("%s Resuming from the %s checkpoint %s instead.", " ".join(skipped), which, path)
        return path
    if not failures:
        raise CodecError(f"Nothing to resume in {run_dir}: " + (pointer_problem or "it has no checkpoint."))
    first, older = failures[0][1].rstrip("."), [path.name for path, _ in failures[1:]]
    if not older:
        raise CodecError(f"{first}; there is no older checkpoint to resume from.")
    raise CodecError(f"{first}; the older checkpoint{'s' * (len(older) > 1)} cannot be loaded either "
                     f"({', '.join(older)}).")
