"""Training checkpoints inside a run folder, written atomically, resumable after any crash.

    run_dir/checkpoints/step_00000200/
        model/          the tokenizer (codec.checkpoint.save_pretrained: config.json + model.safetensors)
        state.pt        the rest of the TrainingState (tensors and plain data only)
    run_dir/checkpoints/latest      name of the newest complete checkpoint
    run_dir/best/                   the model with the best validation score

A checkpoint is assembled in a temporary folder and renamed into place, so a crash (even
SIGKILL) leaves either the previous checkpoint or the new one, never a partial one.
Checkpoints written before TrainingState (no "version" in state.pt) kept the EMA and the
discriminator in ``ema.safetensors`` / ``discriminator.safetensors``; ``read_checkpoint`` returns
those files' weights under their names for the task to upgrade.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..checkpoint import WEIGHTS_FILE, save_pretrained
from ..errors import CodecError
from .state import TrainingState

LATEST = "latest"
STATE_FILE = "state.pt"


def save_checkpoint(run_dir: Path, state: TrainingState, keep: int = 3) -> Path:
    """Write the checkpoint of ``state``'s step atomically, point ``latest`` at it, keep the newest ``keep``."""
    step = state.progress.step
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_pretrained(state.model, tmp / "model", {"step": str(step)})
    rest = {k: v for k, v in state.state_dict().items() if k != "model"}  # the weights are in model/
    torch.save(rest, tmp / STATE_FILE)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, root / LATEST)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The saved training state (a ``TrainingState.state_dict()``, or a version-1 one), on the CPU."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        state["model"] = load_file(str(path / "model" / WEIGHTS_FILE))
        if "version" not in state:  # version 1: more weights in <name>.safetensors
            state.update({p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))})
    except (OSError, RuntimeError, SafetensorError, pickle.UnpicklingError) as e:
        first = " ".join(str(e).split())[:200]
        raise CodecError(f"Cannot resume from {path}: {first}.") from None
    return state
