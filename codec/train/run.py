"""Start or resume a training run in a run folder (what `codec train` does), for any task."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import CodecError
from .checkpoints import latest_checkpoint
from .config import TrainConfig, load_train_config, read_recipe
from .trainer import Trainer


def default_run_dir(recipe: Path) -> Path:
    """runs/<recipe folder>-<recipe name>, e.g. runs/devspeech-codec16k."""
    return Path("runs") / f"{recipe.resolve().parent.name}-{recipe.stem}"


def resolve_config(recipe: Path, run_dir: Path, overrides: list[str], data_dir: str | None,
                   resume: bool) -> TrainConfig:
    """A new run takes the recipe; a resumed run takes the config it was started with."""
    if resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file() or latest_checkpoint(run_dir) is None:
            raise CodecError(f"Nothing to resume in {run_dir}: it has no config.yaml and complete checkpoint.")
        return load_train_config(yaml.safe_load(saved.read_text()), overrides, data_dir)
    if latest_checkpoint(run_dir) is not None:
        raise CodecError(f"Run folder {run_dir} already holds checkpoints; pass --resume to continue it "
                         "or --run-dir to start a new run elsewhere.")
    return load_train_config(read_recipe(recipe), overrides, data_dir)


def run_training(recipe: Path, run_dir: Path | None = None, overrides: list[str] = (), data_dir: str | None = None,
                 resume: bool = False) -> dict[str, float]:
    """Train from a recipe (or resume), returning the last validation metrics."""
    run_dir = run_dir or default_run_dir(recipe)
    config = resolve_config(recipe, run_dir, list(overrides), data_dir, resume)
    try:
        return Trainer(config, run_dir, resume=resume).fit()
    finally:
        from .distributed import shutdown_distributed

        shutdown_distributed()
