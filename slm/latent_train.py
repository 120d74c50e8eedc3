"""Training a LatentLM on latent shards with the shared loop (``task: latent_lm``).

    codec tokenize --continuous --data synth/train --out latents/train
    codec slm train recipes/synthetic/latent_lm.yaml --set data.shards=latents/train [--resume]

Items are random crops of the training utterances' latents [D, T]; a batch is [B, D, T] padded with
NaN past each item's length. The held-out utterances are those of the token LM (the same hash of
their ids). Validation reports the flow-matching loss with fixed noise; it falls slowly and says
little about sample quality, so prefer `codec slm eval` (distances, speaker similarity, WER) to
compare checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.errors import CodecError
from codec.train.config import TrainConfig
from codec.train.distributed import DistributedEnv
from codec.train.logger import TrainLogger
from codec.train.objective import Objective, StepOutput
from codec.train.tasks import Task, TaskData

from .flow import FlowHeadConfig
from .latent_model import LatentLM, LatentLMConfig
from .shards import load_utterances
from .train import Crops, LMDataConfig, split_held_out, training_index
from .transformer import TransformerConfig

VALID_SEED = 1234  # fixed noise and times for the validation loss


@dataclass(frozen=True)
class LatentModelConfig:
    patch: int = 1  # frames per autoregressive step
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head: FlowHeadConfig = field(default_factory=FlowHeadConfig)
    cond_dropout: float = 0.1


@dataclass(frozen=True)
class LatentLMTrainConfig(TrainConfig):
    task: str = "latent_lm"
    model: LatentModelConfig = field(default_factory=LatentModelConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)


def latent_lm_config(config: LatentLMTrainConfig) -> LatentLMConfig:
    """The model's config from the training config and the shards' index (codec, rate, statistics)."""
    index = training_index(config.data.shards, "latents")
    patches = -(-config.data.crop_frames // config.model.patch)
    if config.model.transformer.max_steps < patches:
        raise CodecError(f"model.transformer.max_steps ({config.model.transformer.max_steps}) is below the "
                         f"{patches} patches of a {config.data.crop_frames}-frame crop.")
    stats = index.latent_stats
    try:
        return LatentLMConfig(len(stats.mean), index.token_spec.frame_rate, stats.mean, stats.std, config.model.patch,
                              config.model.transformer, config.model.head, config.model.cond_dropout,
                              index.tokenizer, index.tokenizer_fingerprint)
    except ValueError as e:
        raise CodecError(f"Invalid model config: {e}.") from None


def pad_latents(items: list[Tensor]) -> Tensor:
    """[D, T_i] items -> [B, D, max T_i] padded with NaN."""
    length = max(x.shape[-1] for x in items)
    return torch.stack([F.pad(x, (0, length - x.shape[-1]), value=float("nan")) for x in items])


def split_latent_padding(batch: Tensor) -> tuple[Tensor, Tensor]:
    """Latents [B, D, T] padded with NaN -> (latents with 0 there, lengths [B])."""
    valid = ~batch[:, 0].isnan()
    return torch.where(valid[:, None], batch, torch.zeros((), dtype=batch.dtype)), valid.sum(-1)


def build_latent_data(config: LatentLMTrainConfig, run_dir: Path, env: DistributedEnv) -> TaskData:
    _, items = load_utterances(Path(config.data.shards), kind="latents")
    train, valid = split_held_out(items, config.data.valid_utterances)
    train = [x for x in train if x.shape[-1] >= config.model.patch]
    if not train or not valid:
        raise CodecError(f"The {len(items)} utterances in {config.data.shards} leave {len(train)} for training and "
                         f"{len(valid)} for validation; tokenize more speech or lower data.valid_utterances.")
    return TaskData(Crops(train, config.data.crop_frames), Crops(valid, config.data.crop_frames),
                    config.data.num_workers, collate=pad_latents)


class FlowObjective(Objective):
    """The flow-matching loss of every scored patch."""

    def compute(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        latents, lengths = split_latent_padding(batch)
        out = model(latents, lengths)
        return StepOutput({"flow_matching": out.loss}, {}, out)


@torch.no_grad()
def held_out_flow_loss(model: LatentLM, latents: Iterable[Tensor]) -> float:
    """Mean flow-matching loss over every patch of raw latents [D, T_i], with fixed noise and times."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(VALID_SEED)
    total, patches = 0.0, 0
    for x in latents:
        if x.shape[-1] >= model.config.patch:
            out = model(x[None, :, :model.max_frames].to(device), generator=generator)
            total += float(out.loss) * int(out.patches)
            patches += int(out.patches)
    return total / max(patches, 1)


def validate_latent_lm(model: LatentLM, valid: Crops, logger: TrainLogger, step: int,
                       config: LatentLMTrainConfig) -> dict[str, float]:
    """Held-out flow-matching loss (comparable across steps)."""
    items = logger.track((valid[i] for i in range(len(valid))), len(valid), unit="utterance")
    results = {"flow_loss": held_out_flow_loss(model, items)}
    logger.log_valid(step, results)
    return results


LATENT_LM = Task(
    name="latent_lm",
    config_class=LatentLMTrainConfig,
    build_model=lambda config: LatentLM(latent_lm_config(config)),
    build_objective=lambda config, model, env: FlowObjective(),
    build_data=build_latent_data,
    validate=validate_latent_lm,
    best_metric="flow_loss",
)
