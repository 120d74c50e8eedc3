"""Training logs: TensorBoard scalars, audio and spectrogram images, and a progress bar."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ..eval.spectrogram import spectrogram_image
from .config import TrainConfig


class TrainLogger:
    """Writes to ``run_dir/tensorboard`` and shows a progress bar (main process only)."""

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

    def log_example(self, step: int, name: str, original: torch.Tensor, decoded: torch.Tensor, sample_rate: int) -> None:
        """Audio and spectrograms of one validation clip ([T] tensors)."""
        if not self.enabled:
            return
        for kind, audio in (("original", original), ("decoded", decoded)):
            self.writer.add_audio(f"{name}/{kind}", audio.float().cpu().clamp(-1, 1), step, sample_rate)
            self.writer.add_image(f"{name}/{kind}_mel", spectrogram_image(audio, sample_rate), step)

    def message(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        if self.enabled:
            self.progress.close()
            self.writer.close()
