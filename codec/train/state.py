"""TrainingState: everything a checkpoint saves and ``--resume`` restores, listed once.

    state_dict() = {
        "version": 2, "task": "audio_codec",
        "model":     the tokenizer's weights,
        "ema":       averaged weights (when the EMA is on),
        "optimizer", "scheduler":  the model's optimizer and learning-rate schedule,
        "objective": what the objective trains or tracks itself (discriminator, its optimizer
                     and schedule, balancer statistics, a projection head, ...),
        "progress":  {"step", "nonfinite_streak", "best_valid", "best_step"},
        "rng":       torch (CPU, CUDA) and Python generator states,
    }

Saving and resuming both go through ``parts()``, so a piece cannot be saved and then forgotten
on resume. Only tensors and plain data: ``torch.load(..., weights_only=True)`` reads it back.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .ema import WeightEMA
from .objective import Objective

VERSION = 2  # version 1: the trainer's own flat layout, before TrainingState (see Task.upgrade_checkpoint)


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


@dataclass
class Progress:
    step: int = 0  # optimizer steps taken (skipped non-finite steps count)
    nonfinite_streak: int = 0  # consecutive steps skipped for non-finite losses
    best_valid: float = math.inf  # best (lowest) validation score so far
    best_step: int = 0  # the step it was reached at (the model in run_dir/best)


class TrainableParameters:
    """The trainable parameters of a module that also holds frozen ones (e.g. a loss with a
    pretrained network and a learned projection) as a state: only those are saved."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.named_parameters() if v.requires_grad}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.module.named_parameters())
        expected = {k for k, v in params.items() if v.requires_grad}
        if state.keys() != expected:
            raise ValueError(f"trainable parameters differ: saved {sorted(state)}, expected {sorted(expected)}")
        for name, value in state.items():
            params[name].copy_(value)


def save_parts(parts: dict[str, Stateful]) -> dict[str, Any]:
    return {name: part.state_dict() for name, part in parts.items()}


def load_parts(parts: dict[str, Stateful], state: dict[str, Any], where: str) -> None:
    """Load each part from ``state[name]``; ValueError naming the first part missing from it."""
    missing = [name for name in parts if name not in state]
    if missing:
        raise ValueError(f"the saved {where} has no {missing[0]!r}")
    for name, part in parts.items():
        part.load_state_dict(state[name])


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


class TrainingState:
    """The model, its EMA, optimizer, schedule, objective, progress counters and the RNG."""

    def __init__(self, task: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, objective: Objective,
                 ema: WeightEMA | None = None) -> None:
        self.task, self.model, self.optimizer, self.scheduler = task, model, optimizer, scheduler
        self.objective, self.ema = objective, ema
        self.progress = Progress()

    def parts(self) -> dict[str, Stateful]:
        """The pieces with their own state_dict, in load order (the model before its EMA)."""
        parts: dict[str, Stateful] = {"model": self.model}
        if self.ema is not None:
            parts["ema"] = self.ema
        parts.update(optimizer=self.optimizer, scheduler=self.scheduler, objective=self.objective)
        return parts

    def state_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "task": self.task, **save_parts(self.parts()),
                "progress": asdict(self.progress), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything, RNG included; ValueError if ``state`` is not of this task and layout.

        A run that turned the EMA on only now (``--set ema_decay=...``) starts it at the loaded weights.
        """
        if state.get("version") != VERSION or state.get("task") != self.task:
            raise ValueError(f"it holds version {state.get('version')!r} training state of task "
                             f"{state.get('task')!r}, not version {VERSION} of {self.task!r}")
        parts = self.parts()
        if self.ema is not None and "ema" not in state:
            self.model.load_state_dict(state["model"])
            self.ema.reset(self.model)
            parts.pop("ema")
        load_parts(parts, state, "training state")
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
