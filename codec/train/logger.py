"""Training logs: TensorBoard scalars, images and audio, and progress bars (for any task)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from .config import TrainConfig

T = TypeVar("T")


def say(text: str) -> None:
    """A line on stdout that leaves the progress bars intact."""
    tqdm.write(text)


class TrainLogger:
    """Writes to ``run_dir/tensorboard`` and shows progress bars (main process only)."""

    def __init__(self, run_dir: Path, config: TrainConfig, start_step: int, enabled: bool = True) -> None:
        self.enabled, self.log_every = enabled, config.log_every
        self.writer = None
        self.progress = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)
            self.progress = tqdm(total=config.steps, initial=start_step, desc="training", unit="step",
                                 dynamic_ncols=True)

    def log_train(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.progress.update(1)
        if step % self.log_every == 0 or step == 1:
            for key, value in metrics.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            shown = {k.removeprefix("loss/"): f"{v:.3g}" for k, v in metrics.items() if k.startswith("loss/")}
            self.progress.set_postfix(shown, refresh=False)

    def log_valid(self, step: int, metrics: dict[str, float]) -> None:
        if self.enabled:
            for key, value in metrics.items():
                self.writer.add_scalar(f"valid/{key}", value, step)
            self.message(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def add_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """An image [C, H, W] with values in [0, 1]."""
        if self.enabled:
            self.writer.add_image(tag, image.float().cpu().clamp(0, 1), step)

    def add_audio(self, tag: str, audio: torch.Tensor, step: int, sample_rate: int) -> None:
        """A mono clip [T] with samples in [-1, 1]."""
        if self.enabled:
            self.writer.add_audio(tag, audio.float().cpu().clamp(-1, 1), step, sample_rate)

    def track(self, items: Iterable[T], total: int, desc: str = "validating", unit: str = "item") -> Iterator[T]:
        """``items`` with a progress bar of ``total`` below the training bar, removed when done."""
        if not self.enabled:
            yield from items
            return
        with tqdm(items, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True) as bar:
            yield from bar

    def message(self, text: str) -> None:
        if self.enabled:
            say(text)

    def close(self) -> None:
        if self.enabled:
            self.progress.close()
            self.writer.close()
