"""The audio codec task (``task: audio_codec``, every recipe under recipes/): an ``AudioCodec``
trained on random crops of a speech corpus, validated on held-out clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..audio.model import AudioCodec
from ..audio.registry import resolve_model
from ..data import SegmentDataset, prepare_manifests
from .audio_config import AudioTrainConfig
from .audio_objective import AudioObjective
from .audio_validation import validate_audio
from .distributed import DistributedEnv, barrier
from .state import VERSION
from .tasks import Task, TaskData


def build_audio_data(config: AudioTrainConfig, run_dir: Path, env: DistributedEnv) -> TaskData:
    """Manifests prepared once (by the main process) in ``run_dir/manifests``; crops for training,
    the held-out clips (kept decoded: validation re-reads them every valid_every steps)."""
    manifests = run_dir / "manifests"
    if env.is_main:
        prepare_manifests(config.data, manifests)
    barrier()
    train_cuts, valid_cuts = prepare_manifests(config.data, manifests)
    sr = config.model.sample_rate
    train = SegmentDataset(train_cuts, sr, int(config.data.crop_seconds * sr), config.data, train=True)
    valid = SegmentDataset(valid_cuts, sr, None, config.data, train=False, cache=True)
    return TaskData(train, valid, config.data.num_workers)


def upgrade_v1_checkpoint(old: dict[str, Any]) -> dict[str, Any]:
    """The trainer's flat state.pt (+ ema / discriminator .safetensors) of version 1 as a TrainingState."""
    objective = {"losses": old["objective"]}
    if "discriminator" in old:
        objective.update(discriminator=old["discriminator"], disc_optimizer=old["disc_optimizer"],
                         disc_scheduler=old["disc_scheduler"])
    if "balancer" in old:
        objective["balancer"] = old["balancer"]
    state = {"version": VERSION, "task": "audio_codec", "model": old["model"], "optimizer": old["optimizer"],
             "scheduler": old["scheduler"], "objective": objective, "rng": old["rng"],
             "progress": {"step": old["step"], "nonfinite_streak": old["nonfinite_streak"],
                          "best_valid": old["best_valid"]}}
    if "ema" in old:
        state["ema"] = old["ema"]
    return state


AUDIO_CODEC = Task(
    name="audio_codec",
    config_class=AudioTrainConfig,
    build_model=lambda config: AudioCodec(config.model),
    build_objective=AudioObjective,
    build_data=build_audio_data,
    validate=validate_audio,
    best_metric="mel_distance",
    renamed_keys={"data.segment_seconds": "data.crop_seconds"},  # renamed apart from model.segment_seconds
    upgrade_checkpoint=upgrade_v1_checkpoint,
    find_model=resolve_model,
)
