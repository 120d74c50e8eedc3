"""Start or resume a training run in a run folder (what `codec train` does), for any task.

    run_dir/config.yaml     the config the run was started with; --resume reads it (--set on top)
    run_dir/checkpoints/    the TrainingState every checkpoint_every steps (see checkpoints.py)
    run_dir/best/           the model with the best validation score

The end of a run says where its best model and last checkpoint are and how to go on.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..devices import apply_threads
from ..errors import CodecError
from .checkpoints import has_checkpoints, latest_checkpoint
from .config import TrainConfig, load_train_config, read_recipe
from .logger import say
from .trainer import Trainer


def default_run_dir(recipe: Path) -> Path:
    """runs/<recipe folder>-<recipe name>, e.g. runs/devspeech-codec16k."""
    return Path("runs") / f"{recipe.resolve().parent.name}-{recipe.stem}"


def resolve_config(recipe: Path, run_dir: Path, overrides: list[str], data_dir: str | None,
                   resume: bool) -> TrainConfig:
    """A new run takes the recipe; a resumed run takes the config it was started with."""
    if not resume:
        if has_checkpoints(run_dir):
            raise CodecError(f"Run folder {run_dir} already holds checkpoints; pass --resume to continue it "
                             "or --run-dir to start a new run elsewhere.")
        return load_train_config(read_recipe(recipe), overrides, data_dir)
    saved = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise CodecError(f"Nothing to resume: the run folder {run_dir} does not exist; start the run without "
                         "--resume, or give its folder with --run-dir.")
    if not saved.is_file():
        raise CodecError(f"Nothing to resume in {run_dir}: it has no config.yaml, so no run was started there; "
                         "check --run-dir.")
    data = read_recipe(saved, kind="Run config")
    started = load_train_config(data, source=saved)  # the file alone, so that its errors name it
    if not has_checkpoints(run_dir):
        raise CodecError(f"Nothing to resume in {run_dir}: the run stopped before its first checkpoint (at step "
                         f"{started.checkpoint_every}); run the same command without --resume to start it again.")
    return load_train_config(data, overrides, data_dir)


def end_of_run(trainer: Trainer, recipe: Path) -> str:
    """Where the run's models are and how to continue it, a few lines for the end of `codec train`."""
    progress, steps, run_dir = trainer.state.progress, trainer.config.steps, trainer.run_dir
    command = f"codec train {recipe} --run-dir {run_dir} --resume"
    checkpoint = f"  last checkpoint: {latest_checkpoint(run_dir)}"
    if progress.step < steps:
        return f"training stopped at step {progress.step} of {steps}\n{checkpoint}\n  to continue: {command}"
    best = (f"{run_dir / 'best'} (step {progress.best_step}, {trainer.task.best_metric} {progress.best_valid:.4g})"
            if math.isfinite(progress.best_valid) else "none (the run was not validated)")
    return (f"training finished at step {progress.step} of {steps}\n  best model: {best}\n{checkpoint}\n"
            f"  to train further: {command} --set steps={2 * steps}")


def run_training(recipe: Path, run_dir: Path | None = None, overrides: list[str] = (), data_dir: str | None = None,
                 resume: bool = False) -> dict[str, float]:
    """Train from a recipe (or resume), returning the last validation metrics."""
    run_dir = run_dir or default_run_dir(recipe)
    config = resolve_config(recipe, run_dir, list(overrides), data_dir, resume)
    apply_threads()  # under torchrun, this machine's ranks share its CPUs
    try:
        trainer = Trainer(config, run_dir, resume=resume)
        results = trainer.fit()
        if trainer.env.is_main:
            say(end_of_run(trainer, recipe))
        return results
    finally:
        from .distributed import shutdown_distributed

        shutdown_distributed()
