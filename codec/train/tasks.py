"""The task registry: what one kind of tokenizer needs from the shared training loop.

A recipe names its task (``task: audio_codec``, the default). A ``Task`` says which config
class the recipe fills, how to build the model (a ``Tokenizer``, a token LM), its objective, its data and
its validation; the loop (trainer.py) does the rest the same way for every task: optimizer and
schedule, clipping, non-finite steps, EMA, DDP, bf16, checkpoints, --resume, TensorBoard and
the best model. ``TASKS`` maps a name to the ``module:attribute`` defining it, so a run imports
only its own task's modules (as ``codec.checkpoint.MODEL_TYPES`` does for models).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CodecError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from torch import nn
    from .config import TrainConfig
    from .distributed import DistributedEnv
    from .logger import TrainLogger
    from .objective import Objective

TASKS: dict[str, str] = {  # task name -> "module:attribute" of its Task
    "audio_codec": "codec.train.audio_task:AUDIO_CODEC",
    "token_lm": "slm.train:TOKEN_LM",
    "latent_lm": "slm.latent_train:LATENT_LM",
    "image_tokenizer": "codec.train.visual_task:IMAGE_TOKENIZER",
    "video_tokenizer": "codec.train.visual_task:VIDEO_TOKENIZER",
    "image_generator": "slm.visual_train:IMAGE_GENERATOR",
}


@dataclass(frozen=True)
class TaskData:
    """A task's training items, addressed by ``(index, seed)`` (see codec.data.StepBatchSampler), and
    whatever its validation reads."""

    train: Dataset
    valid: Any
    num_workers: int = 0  # DataLoader worker processes of the training loader
    collate: Callable[[list[Any]], Any] | None = None  # training items -> a batch (default: pad audio [C, T])


@dataclass(frozen=True)
class Task:
    """How one kind of tokenizer trains; the loop calls these and knows nothing else about it."""

    name: str
    config_class: type[TrainConfig]  # the recipe's typed config (TrainConfig plus the task's sections)
    build_model: Callable[[TrainConfig], nn.Module]  # a fresh model of a registered model_type (global RNG)
    build_objective: Callable[[TrainConfig, nn.Module, DistributedEnv], Objective]
    build_data: Callable[[TrainConfig, Path, DistributedEnv], TaskData]  # (config, run folder, env)
    # (model in eval mode, TaskData.valid, logger, step, config) -> metrics; main process only
    validate: Callable[[nn.Module, Any, TrainLogger, int, TrainConfig], dict[str, float]]
    best_metric: str  # the validation metric (lower is better) that picks run_dir/best
    renamed_keys: Mapping[str, str] = field(default_factory=dict)  # old dotted config key -> new, same section
    find_model: Callable[[str], Path] | None = None  # a model's name -> its folder (for init_from by name)
    # training state of checkpoints older than TrainingState (format 1) -> the current layout
    upgrade_checkpoint: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def unknown_task(name: Any) -> str:
    return f"config.task must be one of {', '.join(map(repr, TASKS))}, got {name!r}"


def get_task(name: Any) -> Task:
    """The task registered as ``name``; CodecError (naming config.task) if there is none."""
    if not isinstance(name, str) or name not in TASKS:
        raise CodecError(f"Invalid training config: {unknown_task(name)}.")
    module, attribute = TASKS[name].split(":")
    task = getattr(importlib.import_module(module), attribute)
    if not isinstance(task, Task) or task.name != name:
        raise CodecError(f"{TASKS[name]} is not the Task {name!r}.")
    return task
