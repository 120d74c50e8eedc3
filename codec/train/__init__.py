"""Training any tokenizer: the task registry, the (distributed, resumable) loop, checkpoints and logging."""

from .config import TrainConfig, load_train_config, read_recipe
from .objective import Objective, StepOutput
from .run import default_run_dir, run_training
from .state import TrainingState
from .tasks import TASKS, Task, TaskData, get_task
from .trainer import Trainer

__all__ = ["TASKS", "Objective", "StepOutput", "Task", "TaskData", "TrainConfig", "Trainer", "TrainingState",
           "default_run_dir", "get_task", "load_train_config", "read_recipe", "run_training"]
