"""Training checkpoints inside a run folder, written atomically, resumable after any crash.

    run_dir/checkpoints/step_00000200/
        model/                      the codec (save_pretrained: config.json + model.safetensors)
        ema.safetensors             weight-EMA of the codec (when enabled)
        discriminator.safetensors   (when adversarial training is on)
        state.pt                    optimizers, schedulers, balancer, step, RNG (tensors and plain data only)
    run_dir/checkpoints/latest      name of the newest complete checkpoint
    run_dir/best/                   the model with the best validation mel distance

A checkpoint is assembled in a temporary folder and renamed into place, so a crash (even
SIGKILL) leaves either the previous checkpoint or the new one, never a partial one.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import save_pretrained
from ..audio.model import AudioCodec
from ..errors import CodecError

LATEST = "latest"


def _tensors(module_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module_state.items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: AudioCodec, state: dict[str, Any],
                    ema: dict[str, torch.Tensor] | None = None,
                    discriminator: torch.nn.Module | None = None, keep: int = 3) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_pretrained(model, tmp / "model", {"step": str(step)})
    if ema is not None:
        save_file(_tensors(ema), str(tmp / "ema.safetensors"))
    if discriminator is not None:
        save_file(_tensors(discriminator.state_dict()), str(tmp / "discriminator.safetensors"))
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / "state.pt")
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
    return path if (path / "state.pt").is_file() else None


def load_checkpoint_state(path: Path, model: AudioCodec, discriminator: torch.nn.Module | None,
                          device: torch.device) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Load weights into ``model`` / ``discriminator``; return (state, ema weights or None)."""
    try:
        model.load_state_dict(load_file(str(path / "model" / "model.safetensors"), device=str(device)))
        if discriminator is not None:
            discriminator.load_state_dict(load_file(str(path / "discriminator.safetensors"), device=str(device)))
        ema_path = path / "ema.safetensors"
        ema = load_file(str(ema_path), device=str(device)) if ema_path.is_file() else None
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)  # optimizers move it
    except (OSError, RuntimeError, pickle.UnpicklingError) as e:
        first = " ".join(str(e).split())[:200]
        raise CodecError(f"Cannot resume from {path}: {first}.") from None
    set_rng_state(state["rng"])
    return state, ema
