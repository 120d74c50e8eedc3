"""Training: config, the (distributed, resumable) trainer, checkpoints and logging."""

from .config import TrainConfig, load_train_config, read_recipe
from .run import default_run_dir, run_training
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "default_run_dir", "load_train_config", "read_recipe", "run_training"]
