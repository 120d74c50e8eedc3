"""The training loop for any model (a tokenizer, a token language model) and objective: one
process or many (torchrun + DDP), resumable at any step.

The task named by the config (see tasks.py) builds the model, its objective, its data and its
validation; the loop does the rest the same way for every task. Each step: the objective's
losses under bf16 autocast (on CUDA), a skipped step if any loss is non-finite on any rank
(abort after ``max_nonfinite_steps`` in a row), the objective's backward, gradient clipping,
the optimizer and schedule steps, the objective's own after-step work (e.g. a discriminator
update) and the weight EMA. Every ``valid_every`` steps the exported model (the EMA when on)
is validated and the best one saved to ``run_dir/best``; every ``checkpoint_every`` steps the
whole TrainingState is saved (see checkpoints.py: atomic, a crash at any point is harmless).

Data are a pure function of the step (see ``StepBatchSampler``), so resuming restores the
data position from the step alone; everything else comes from the checkpoint's TrainingState.
A finished run resumes only with a larger ``steps``.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import MODEL_TYPES, load_checkpoint, save_pretrained
from ..data.loader import build_train_loader
from ..errors import CodecError
from ..files import atomic_write
from .checkpoints import load_newest, read_checkpoint, save_checkpoint
from .config import TrainConfig, dump_train_config
from .distributed import (DistributedEnv, all_finite, all_reduce_grads, autocast, barrier, init_distributed,
                          wrap_ddp)
from .ema import WeightEMA
from .logger import TrainLogger
from .optim import build_optimizer, clip_gradients
from .state import TrainingState
from .tasks import get_task


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (a tensor, or a tuple or list of them) on ``device``."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch.to(device)


class Trainer:
    """Build everything a run needs from a config (through its task), then ``fit()``."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.task = get_task(config.task)
        self.env: DistributedEnv = init_distributed(config.device)
        if config.batch_size % self.env.world_size:
            raise CodecError(f"batch_size {config.batch_size} does not split over {self.env.world_size} processes.")
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        device = self.env.device
        self.model: nn.Module = self.task.build_model(config).to(device)
        if getattr(self.model, "model_type", None) not in MODEL_TYPES:  # else save_pretrained could not save it
            raise CodecError(f"Task {self.task.name!r} built a {type(self.model).__name__}, which is not a model type "
                             "of codec.checkpoint.MODEL_TYPES.")
        if config.init_from and not resume:
            self._init_weights(config.init_from, config.init_modules)
        for name in config.freeze:
            self._submodule(name).requires_grad_(False)  # no gradients: the optimizer leaves them as they are
        self.objective = self.task.build_objective(config, self.model, self.env)
        params = list(self.model.parameters()) + list(self.objective.trainable_parameters())
        self.optimizer, self.scheduler = build_optimizer(params, config.optim, config.steps)
        self.ema = WeightEMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.state = TrainingState(config.task, self.model, self.optimizer, self.scheduler, self.objective, self.ema)
        self.data = self.task.build_data(config, self.run_dir, self.env)
        self.train_set, self.valid_set = self.data.train, self.data.valid
        if len(self.train_set) == 0:
            raise CodecError(f"Task {self.task.name!r} found no training items for {self.run_dir}.")
        self._saved_step: int | None = None  # the step of the newest checkpoint on disk
        if resume:
            load_newest(self.run_dir, self._load_checkpoint)
            self._saved_step = self.step
            if self.step >= config.steps:
                raise CodecError(f"The run in {self.run_dir} already finished at step {self.step} (steps: "
                                 f"{config.steps}); to continue it, raise steps, e.g. --resume --set "
                                 f"steps={2 * self.step}.")
        self.train_model = wrap_ddp(self.model, self.env)
        # frozen modules still run in training mode (e.g. quantizer dropout), but what they would learn
        # there without gradients (EMA codebooks, dead-code restarts) is undone after every step
        self._frozen_buffers = [(buffer, buffer.clone()) for name in config.freeze
                                for buffer in self._submodule(name).buffers()]
        self._stop_requested = False

    @property
    def step(self) -> int:
        return self.state.progress.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.progress.step = value

    def _submodule(self, name: str) -> nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in self.model.named_children())
            raise CodecError(f"This run's model has no submodule {name!r} (it has: {children}).") from None

    def _init_weights(self, source: str, modules: tuple[str, ...] = ()) -> None:
        """Start from the weights of model folder (or bundled codec) ``source``, which must be this
        run's architecture (fine-tuning); with ``modules``, only those submodules' weights, which
        must match, are taken (e.g. a pretrained encoder under a new decoder)."""
        folder = Path(source)
        if not folder.is_dir() and self.task.find_model is not None:
            folder = self.task.find_model(source)
        if not folder.is_dir():
            raise CodecError(f"init_from {source} is not a model folder.")
        start = load_checkpoint(folder, "cpu", model_type=self.model.model_type)
        try:
            if not modules:
                self.model.load_state_dict(start.state_dict())
            for name in modules:
                self._submodule(name).load_state_dict(start.get_submodule(name).state_dict())
        except (RuntimeError, AttributeError) as e:
            first = " ".join(str(e).split())[:200]
            raise CodecError(f"init_from {source} is not this run's architecture ({first}).") from None

    def _load_checkpoint(self, path: Path) -> None:
        """Restore the TrainingState from checkpoint ``path``; a CodecError naming it if it does not fit."""
        saved = read_checkpoint(path)
        try:
            if "version" not in saved:
                if self.task.upgrade_checkpoint is None:
                    raise ValueError(f"task {self.task.name!r} cannot read checkpoints of format 1")
                saved = self.task.upgrade_checkpoint(saved)
            self.state.load_state_dict(saved)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            first = " ".join(str(e).split())[:200]
            raise CodecError(f"Checkpoint {path} does not fit this run: {first.rstrip('.')}.") from None

    # --- one step --------------------------------------------------------------------------
    def train_step(self, batch: Any) -> dict[str, float]:
        """One optimizer step of the model (and whatever the objective updates after it)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.env, self.config.bf16):
            out = self.objective.compute(self.train_model, batch, self.step)
        for buffer, frozen in self._frozen_buffers:
            buffer.copy_(frozen)
        if not all_finite(out.losses, self.env):
            return self._skip_step(out.losses)
        self.state.progress.nonfinite_streak = 0
        metrics = self.objective.backward(out)
        all_reduce_grads(self.objective.trainable_parameters(), self.env)  # not inside DDP
        params = list(self.model.parameters()) + self.objective.trainable_parameters()
        metrics["grad_norm"] = clip_gradients(params, self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        metrics.update(self.objective.after_step(batch, out, self.step))
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        metrics.update({f"loss/{k}": v.item() for k, v in out.losses.items()})
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        metrics.update(out.metrics)
        return metrics

    def _skip_step(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        progress = self.state.progress
        progress.nonfinite_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        bad = ", ".join(k for k, v in losses.items() if not torch.isfinite(v).all())
        if progress.nonfinite_streak >= self.config.max_nonfinite_steps:
            raise CodecError(f"Training diverged: {progress.nonfinite_streak} steps in a row had non-finite losses "
                             f"({bad}) at step {self.step}.")
        return {"nonfinite_steps": float(progress.nonfinite_streak)}

    # --- models and checkpoints ------------------------------------------------------------
    def export_model(self) -> nn.Module:
        """The model to publish: the weight EMA when enabled, else the trained weights (eval mode)."""
        if self.ema is None:
            return self.model.eval()
        return self.ema.copy_to(self.task.build_model(self.config).to(self.env.device)).eval()

    def save(self) -> None:
        """Checkpoint the TrainingState (main process), unless this step's checkpoint exists already."""
        if self.env.is_main and self._saved_step != self.step:
            save_checkpoint(self.run_dir, self.state, self.config.keep_checkpoints)
        self._saved_step = self.step

    # --- the loop --------------------------------------------------------------------------
    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def fit(self) -> dict[str, float]:
        """Train to ``config.steps``; Ctrl-C / SIGTERM save a checkpoint and return early."""
        config = self.config
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.run_dir / "config.yaml", force=True) as tmp:
                tmp.write_text(dump_train_config(config))
        logger = TrainLogger(self.run_dir, config, self.step, enabled=self.env.is_main)
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        loader = build_train_loader(self.train_set, config.batch_size, config.seed, self.env.rank,
                                    self.env.world_size, self.step, self.data.num_workers, self.data.collate)
        last_valid: dict[str, float] = {}
        try:
            if self.step == 0 and config.valid_at_start:
                last_valid = self._validate(logger)  # the untrained baseline
            for batch in loader:
                if self.step >= config.steps or self._stop_requested:
                    break
                started = time.perf_counter()
                metrics = self.train_step(to_device(batch, self.env.device))
                self.step += 1
                metrics["seconds_per_step"] = time.perf_counter() - started
                logger.log_train(self.step, metrics)
                if self.step % config.valid_every == 0 or self.step == config.steps:
                    last_valid = self._validate(logger)
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save()
            if self._stop_requested:
                self.save()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            logger.close()
        return last_valid

    def _validate(self, logger: TrainLogger) -> dict[str, float]:
        """Validate the exported model (main process) and keep it in run_dir/best if it is the best yet."""
        if not self.env.is_main:
            barrier()
            return {}
        model = self.export_model()
        results = self.task.validate(model, self.valid_set, logger, self.step, self.config)
        self.model.train()
        metric, progress = self.task.best_metric, self.state.progress
        if metric not in results:
            raise CodecError(f"Validation of task {self.task.name!r} gave no {metric!r} (it gave "
                             f"{', '.join(results) or 'nothing'}); is the validation set empty?")
        if results[metric] < progress.best_valid:
            progress.best_valid, progress.best_step = results[metric], self.step
            save_pretrained(model, self.run_dir / "best", {"step": str(self.step),
                            f"valid_{metric}": f"{progress.best_valid:.4f}"}, force=True)
        barrier()
        return results
