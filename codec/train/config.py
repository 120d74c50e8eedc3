"""The training configuration: the loop's settings shared by every task, loaded from a recipe YAML.

A recipe names its task (``task: audio_codec``, the default when absent); the task's config
class extends ``TrainConfig`` with its own sections (the audio codec's: model, data, losses,
...). A recipe holds any subset of the fields (nested mappings); missing ones take the
defaults. ``--set a.b=value`` overrides are applied to the same tree and validated by type,
so a typo or a wrong type is a clear error, never a silent default. Keys a task renamed
(``data.segment_seconds`` -> ``data.crop_seconds``) are read under their new name.

A run folder's config.yaml records ``config_version`` (``CONFIG_VERSION``); one written by a
newer version of codec is refused by name instead of being misread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import config_from_dict, config_to_dict
from ..errors import CodecError

log = logging.getLogger(__name__)
DEFAULT_TASK = "audio_codec"
CONFIG_VERSION = 1  # the layout of the configs codec writes (config_version); configs without one are 1


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from 0
    schedule: Literal["constant", "cosine", "exponential"] = "exponential"
    gamma: float = 0.999996  # exponential: lr factor per step after warm-up (DAC)
    min_lr_ratio: float = 0.0  # cosine: final lr / lr
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping


@dataclass(frozen=True)
class TrainConfig:
    """What the training loop itself reads; a task's config class adds its own sections."""

    task: str = DEFAULT_TASK  # a name in codec.train.tasks.TASKS
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    batch_size: int = 16  # global batch, split over ranks
    seed: int = 0
    ema_decay: float = 0.0  # weight EMA for the exported model; 0 disables it
    log_every: int = 10
    valid_every: int = 200  # validation (with a progress bar) every N steps and at the last step
    # also validate the untrained model before step 1: a baseline for TensorBoard, at the cost of one
    # more full validation (minutes for a large validation set); off, a short smoke run validates once
    valid_at_start: bool = False
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    max_nonfinite_steps: int = 5  # abort after this many consecutive non-finite losses
    bf16: bool = True  # autocast on CUDA
    device: str = "auto"  # auto, cpu, cuda
    init_from: str = ""  # fine-tuning: a model folder (or bundled codec name) whose weights start a new run
    init_modules: tuple[str, ...] = ()  # with init_from: take only these submodules (e.g. [encoder, quantizer])
    freeze: tuple[str, ...] = ()  # submodules whose weights stay fixed (e.g. a pretrained encoder)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "log_every", "valid_every", "checkpoint_every", "keep_checkpoints",
                    "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.init_modules and not self.init_from:
            raise ValueError("init_modules needs init_from (the model to take them from)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 0.0001); the value is read as a YAML scalar or list."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CodecError(f"--set expects key=value, got {text!r}.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def load_train_config(recipe: dict[str, Any], overrides: list[str] = (), data_dir: str | None = None,
                      source: str | Path | None = None) -> TrainConfig:
    """The task's config from recipe data plus ``--set`` overrides and ``--data-dir``; errors name
    ``source``, the file the recipe data came from, when given."""
    parsed = [parse_override(text) for text in overrides]
    try:
        return _build_config(_current_version(recipe), parsed, data_dir)
    except ValueError as e:
        where = f" in '{source}'" if source else ""
        raise CodecError(f"Invalid training config{where}: {e}.") from None


def _current_version(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` without its config_version, which must be one this version of codec reads."""
    version = recipe.get("config_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"config_version must be a positive integer, got {version!r}")
    if version > CONFIG_VERSION:
        raise ValueError(f"config_version {version} is from a newer version of codec (this one reads up to "
                         f"{CONFIG_VERSION}); upgrade codec to use it")
    return {k: v for k, v in recipe.items() if k != "config_version"}


def _build_config(recipe: dict[str, Any], parsed: list[tuple[list[str], Any]], data_dir: str | None) -> TrainConfig:
    from .tasks import TASKS, get_task, unknown_task

    name = next((value for keys, value in reversed(parsed) if keys == ["task"]), recipe.get("task", DEFAULT_TASK))
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(unknown_task(name))
    task = get_task(name)
    data = _renamed(_deep_copy(recipe), task.renamed_keys)
    for keys, value in parsed:
        keys = task.renamed_keys.get(".".join(keys), ".".join(keys)).split(".")
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            node[k] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[keys[-1]] = value
    data = _renamed(data, task.renamed_keys)  # keys inside a section set whole by an override
    if data_dir is not None:
        data["data"] = {**dict(data.get("data") or {}), "data_dir": str(data_dir)}
    return config_from_dict(task.config_class, data)


def _deep_copy(data: Any) -> Any:
    return {k: _deep_copy(v) for k, v in data.items()} if isinstance(data, dict) else data


def _renamed(data: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """``data`` (changed in place) with each old dotted key moved to its new name (in the same section)."""
    for old, new in renames.items():
        *path, key = old.split(".")
        node = data
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            continue
        new_key = new.split(".")[-1]
        if new_key in node and node[new_key] != node[key]:
            raise ValueError(f"config.{old} is the old name of config.{new}; give only {new}")
        node[new_key] = node.pop(key)
        log.warning("config key %s is now called %s (read as such)", old, new)
    return data


def read_recipe(path: str | Path, kind: str = "Recipe") -> dict[str, Any]:
    """The config sections in a YAML file (a recipe, or a run folder's config.yaml: ``kind`` names it)."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{kind} {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CodecError(f"{kind} {path} is not valid YAML ({' '.join(str(e).split())}).") from None
    if not isinstance(data, dict):
        raise CodecError(f"{kind} {path} must be a YAML mapping of config sections.")
    return data


def dump_train_config(config: TrainConfig) -> str:
    """config.yaml of a run folder: the config_version, then every setting."""
    return yaml.safe_dump({"config_version": CONFIG_VERSION, **config_to_dict(config)}, sort_keys=False)
