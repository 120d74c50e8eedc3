"""Training a TokenLM on token shards with the shared loop (``task: token_lm``).

    codec slm train recipes/slm/token_lm.yaml --set data.shards=tokens/ [--resume]

Items are random crops of at most ``crop_frames`` frames of the training utterances; a batch is
codes [B, Q, T] padded with -1 past each item's length, which the objective turns into lengths.
A few utterances, chosen by a hash of their ids, are held out for validation: mean negative
log-likelihood in bits per token (each level and all) and in bits per second.
"""

from __future__ import annotations

import hashlib
import math
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

from .model import TokenLM, TokenLMConfig
from .patterns import Pattern, PatternName
from .shards import Kind, ShardIndex, Utterance, load_utterances, read_index
from .transformer import TransformerConfig

NATS_TO_BITS = 1 / math.log(2)


@dataclass(frozen=True)
class LMDataConfig:
    shards: str = ""  # folder written by `codec tokenize`
    valid_utterances: int = 16  # held out for validation (chosen by a hash of their ids)
    crop_frames: int = 500  # at most this many frames per training item (10 s at 50 Hz)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.valid_utterances < 1 or self.crop_frames < 2 or self.num_workers < 0:
            raise ValueError("valid_utterances must be >= 1, crop_frames >= 2 and num_workers >= 0")


@dataclass(frozen=True)
class LMModelConfig:
    pattern: PatternName = "delay"
    n_q: int = 0  # codebook levels modelled (the first ones); 0: every level in the shards
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    depth: TransformerConfig | None = None  # a depth transformer over each frame's levels (pattern: parallel)


@dataclass(frozen=True)
class TokenLMTrainConfig(TrainConfig):
    task: str = "token_lm"
    model: LMModelConfig = field(default_factory=LMModelConfig)
    data: LMDataConfig = field(default_factory=LMDataConfig)


def lm_config(config: TokenLMTrainConfig) -> TokenLMConfig:
    """The model's config from the training config and the shards' index (their codec and rates)."""
    index = training_index(config.data.shards, "codes")
    spec = index.token_spec
    n_q = config.model.n_q or spec.n_q
    if not 1 <= n_q <= spec.n_q:
        raise CodecError(f"model.n_q must be between 1 and {spec.n_q} (the shards' levels), got {n_q}.")
    steps = Pattern(config.model.pattern, n_q).num_steps(config.data.crop_frames)
    if config.model.transformer.max_steps < steps:
        raise CodecError(f"model.transformer.max_steps ({config.model.transformer.max_steps}) is below the "
                         f"{steps} steps of a {config.data.crop_frames}-frame crop.")
    try:
        return TokenLMConfig(spec.codebook_sizes[:n_q], spec.frame_rate, config.model.pattern, config.model.transformer,
                             index.tokenizer, index.tokenizer_fingerprint, config.model.depth)
    except ValueError as e:
        raise CodecError(f"Invalid model config: {e}.") from None


def training_index(shards: str, kind: Kind) -> ShardIndex:
    """The index of ``data.shards``, which must hold ``kind`` (a token LM trains on codes, a latent LM
    on latents)."""
    how = "`codec tokenize`" if kind == "codes" else "`codec tokenize --continuous`"
    if not shards:
        raise CodecError(f"Set data.shards to a folder written by {how} (e.g. --set data.shards=tokens/).")
    index = read_index(Path(shards))
    if index.kind != kind:
        raise CodecError(f"{shards} holds {index.kind}, but this model trains on {kind}: make them with {how}.")
    return index


def split_held_out(items: list[tuple[Utterance, Tensor]], count: int) -> tuple[list[Tensor], list[Tensor]]:
    """(training codes, about ``count`` held-out codes), chosen by a hash of the utterance ids, so the
    same utterances are held out in training and in evaluation."""
    fraction_of_256 = max(1, round(256 * count / max(1, len(items))))
    held = [hashlib.sha256(u.id.encode()).digest()[0] < fraction_of_256 for u, _ in items]
    train = [codes for (_, codes), h in zip(items, held) if not h]
    return train, [codes for (_, codes), h in zip(items, held) if h][:count]


class Crops(torch.utils.data.Dataset):
    """Utterances' codes [Q, T]; item (index, seed) is a random crop of at most ``crop`` frames."""

    def __init__(self, codes: list[Tensor], crop: int | None) -> None:
        self.codes, self.crop = codes, crop

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, item: int | tuple[int, int]) -> Tensor:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        codes = self.codes[index]
        if self.crop is None or codes.shape[-1] <= self.crop:
            return codes
        start = int(torch.randint(0, codes.shape[-1] - self.crop + 1, (1,), generator=torch.Generator().manual_seed(seed)))
        return codes[:, start:start + self.crop]


def pad_codes(items: list[Tensor]) -> Tensor:
    """[Q, T_i] items -> [B, Q, max T_i] padded with -1."""
    length = max(x.shape[-1] for x in items)
    return torch.stack([F.pad(x, (0, length - x.shape[-1]), value=-1) for x in items])


def build_lm_data(config: TokenLMTrainConfig, run_dir: Path, env: DistributedEnv) -> TaskData:
    index, items = load_utterances(Path(config.data.shards), kind="codes")
    n_q = config.model.n_q or index.token_spec.n_q
    train, valid = split_held_out(items, config.data.valid_utterances)
    train = [codes[:n_q] for codes in train if codes.shape[-1] > 1]
    valid = [codes[:n_q] for codes in valid]
    if not train or not valid:
        raise CodecError(f"The {len(items)} utterances in {config.data.shards} leave {len(train)} for training and "
                         f"{len(valid)} for validation; tokenize more speech or lower data.valid_utterances.")
    return TaskData(Crops(train, config.data.crop_frames), Crops(valid, config.data.crop_frames),
                    config.data.num_workers, collate=pad_codes)


def split_padding(batch: Tensor) -> tuple[Tensor, Tensor]:
    """Codes [B, Q, T] padded with -1 -> (codes with 0 there, lengths [B])."""
    lengths = (batch[:, 0] >= 0).sum(-1)
    return batch.clamp_min(0), lengths


class LMObjective(Objective):
    """Cross-entropy of every code under the pattern; per-level loss and accuracy logged."""

    def compute(self, model: nn.Module, batch: Tensor, step: int) -> StepOutput:
        codes, lengths = split_padding(batch)
        out = model(codes, lengths)
        metrics = {f"level_{q}/bits": float(loss.detach()) * NATS_TO_BITS for q, loss in enumerate(out.level_losses)}
        metrics.update({f"level_{q}/accuracy": float(a) for q, a in enumerate(out.level_accuracy)})
        return StepOutput({"cross_entropy": out.loss}, metrics, out)


@torch.no_grad()
def validate_lm(model: TokenLM, valid: Crops, logger: TrainLogger, step: int, config: TokenLMTrainConfig) -> dict[str, float]:
    """Held-out NLL: bits per token of each level and of all, and bits per second."""
    model.eval()
    device = next(model.parameters()).device
    nats, counts = 0, 0
    for codes in logger.track((valid[i] for i in range(len(valid))), len(valid), unit="utterance"):
        out = model(codes[None].to(device))
        nats = nats + out.level_losses * out.level_counts
        counts = counts + out.level_counts
    bits = (nats / counts.clamp_min(1)) * NATS_TO_BITS  # [Q]
    results = {"bits_per_token": float(bits.mean()), "bits_per_second": float(bits.sum()) * model.config.frame_rate}
    results.update({f"bits_level_{q}": float(b) for q, b in enumerate(bits)})
    logger.log_valid(step, results)
    return results


TOKEN_LM = Task(
    name="token_lm",
    config_class=TokenLMTrainConfig,
    build_model=lambda config: TokenLM(lm_config(config)),
    build_objective=lambda config, model, env: LMObjective(),
    build_data=build_lm_data,
    validate=validate_lm,
    best_metric="bits_per_token",
)

