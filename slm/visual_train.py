"""Training image and video generators with the shared loop (``task: image_generator``).

    codec train digits/maskgit          # recipes/digits/{ar,maskgit,var,flow}.yaml, recipes/moving_digits/ar.yaml

``model.method`` picks the generator: ``ar`` (raster autoregressive over codes), ``maskgit``
(bidirectional, masked tokens), ``var`` (next-scale prediction over a multi-scale tokenizer's codes)
or ``flow`` (continuous tokens: the tokenizer's latents with a flow-matching head, in raster or random
order). The tokenizer (``data.tokenizer``: a name or folder) codes the labelled dataset once
(slm/visual_data.py); the attention's causality follows from the method. Validation: the loss on the
valid split with fixed masks and noise; `codec lm eval` measures what the samples look like.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from codec.checkpoint import model_fingerprint
from codec.errors import CodecError
from codec.train.config import TrainConfig
from codec.train.distributed import DistributedEnv
from codec.train.logger import TrainLogger
from codec.train.objective import Objective, StepOutput
from codec.train.tasks import Task, TaskData

from .flow import FlowHeadConfig
from .transformer import TransformerConfig
from .visual_data import CodedDataset, CodedItems, code_dataset, collate

Method = Literal["ar", "maskgit", "var", "flow"]
VALID_SEED = 1234  # fixed masks and noise for the validation loss
NUM_CLASSES = 10  # digits


@dataclass(frozen=True)
class GeneratorDataConfig:
    tokenizer: str = ""  # the image or video tokenizer (name or folder) whose tokens are generated
    dataset: str = "digits"  # digits or moving_digits
    size: int = 32
    frames: int = 9  # moving_digits: frames per clip
    train_items: int = 4000  # moving_digits: clips (digits: the whole train split)
    valid_items: int = 256  # moving_digits: clips (digits: the whole valid split)
    n_q: int = 0  # ar / maskgit: residual levels modelled (0: all)

    def __post_init__(self) -> None:
        if self.size < 1 or self.frames < 1 or self.train_items < 1 or self.valid_items < 1 or self.n_q < 0:
            raise ValueError("data.size, frames, train_items and valid_items must be positive, n_q >= 0")


@dataclass(frozen=True)
class GeneratorModelConfig:
    method: Method = "ar"
    transformer: TransformerConfig = field(default_factory=lambda: TransformerConfig(dim=192, layers=4, heads=4))
    cond_dropout: float = 0.1  # labels dropped for classifier-free guidance
    maskgit_steps: int = 8  # maskgit: default decoding steps
    order: Literal["raster", "random"] = "raster"  # flow: raster AR or random order (MAR)
    head: FlowHeadConfig = field(default_factory=FlowHeadConfig)  # flow
    head_steps: int = 20  # flow: ODE steps of the head when sampling


@dataclass(frozen=True)
class GeneratorTrainConfig(TrainConfig):
    task: str = "image_generator"
    model: GeneratorModelConfig = field(default_factory=GeneratorModelConfig)
    data: GeneratorDataConfig = field(default_factory=GeneratorDataConfig)


@functools.lru_cache(maxsize=4)
def load_data_tokenizer(name: str, device: str = "cpu") -> nn.Module:
    """The tokenizer ``data.tokenizer`` names, loaded once per process and device (the model, the data,
    the objective and every validation share it; nothing changes it)."""
    from codec.audio.registry import load_tokenizer

    if not name:
        raise CodecError("Set data.tokenizer to an image or video tokenizer (a name such as digits_conv or a folder).")
    tokenizer = load_tokenizer(name, device).eval()
    if tokenizer.token_spec.modality == "audio":
        raise CodecError(f"data.tokenizer {name!r} is an audio codec; image generators need an image "
                         "or video tokenizer.")
    return tokenizer


@functools.lru_cache(maxsize=4)
def coded_split(data: GeneratorDataConfig, split: str) -> CodedItems:
    """The split coded by the tokenizer (once per process: the model and the data both need it)."""
    items = data.train_items if split == "train" else data.valid_items
    return code_dataset(load_data_tokenizer(data.tokenizer), data.dataset, split, data.size, data.frames, items)


def build_generator(config: GeneratorTrainConfig) -> nn.Module:
    """A fresh generator of ``model.method`` sized by the tokenizer's TokenSpec (and, for the flow head,
    normalised by the statistics of the training latents)."""
    tokenizer = load_data_tokenizer(config.data.tokenizer)
    spec, fingerprint, m = tokenizer.token_spec, model_fingerprint(tokenizer), config.model
    coded = coded_split(config.data, "train")
    grid = tuple(coded.codes.shape[2:])
    causal = m.method == "ar" or (m.method == "flow" and m.order == "raster")
    transformer = replace(m.transformer, causal=causal)
    try:
        if m.method in ("ar", "maskgit"):
            from .image_lm import ImageTokenLM, ImageTokenLMConfig

            n_q = config.data.n_q or spec.n_q
            if n_q > spec.n_q:
                raise ValueError(f"data.n_q ({n_q}) exceeds the tokenizer's {spec.n_q} levels")
            return ImageTokenLM(ImageTokenLMConfig(m.method, spec.codebook_sizes[:n_q], grid, NUM_CLASSES, transformer,
                                                   m.cond_dropout, m.maskgit_steps, config.data.tokenizer, fingerprint))
        if m.method == "var":
            from .var import NextScaleLM, NextScaleLMConfig

            if not spec.scales:
                raise ValueError("method var needs a multi-scale tokenizer (architecture: multiscale)")
            return NextScaleLM(NextScaleLMConfig(spec.scales, spec.codebook_sizes[0], spec.latent_dim, NUM_CLASSES,
                                                 config.data.tokenizer, fingerprint, m.cond_dropout, transformer))
        from .image_flow import ImageFlowLM, ImageFlowLMConfig, latent_statistics

        mean, std = latent_statistics(coded.latents)
        return ImageFlowLM(ImageFlowLMConfig(grid, spec.latent_dim, NUM_CLASSES, mean, std, config.data.tokenizer,
                                             fingerprint, m.order, m.cond_dropout, m.head_steps, transformer, m.head))
    except ValueError as e:
        raise CodecError(f"Invalid generator config: {e}.") from None


def build_generator_data(config: GeneratorTrainConfig, run_dir: Path, env: DistributedEnv) -> TaskData:
    train, valid = (CodedDataset(coded_split(config.data, split)) for split in ("train", "valid"))
    return TaskData(train, valid, 0, collate=collate)


class GeneratorObjective(Objective):
    """Cross-entropy of the codes (ar, maskgit, var) or the flow-matching loss of the latents (flow)."""

    def __init__(self, config: GeneratorTrainConfig, model: nn.Module, env: DistributedEnv) -> None:
        self.method = config.model.method
        self.n_q = len(model.config.codebook_sizes) if self.method in ("ar", "maskgit") else 0
        self.tokenizer = load_data_tokenizer(config.data.tokenizer, str(env.device)) if self.method == "var" else None
        if self.tokenizer is not None:
            model.check_tokenizer(self.tokenizer)

    def losses(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor],
               generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, float]]:
        codes, latents, labels = batch
        if self.method == "flow":
            return {"flow": model(latents, labels, generator=generator).loss}, {}
        if self.method == "var":
            out = model(codes, labels, self.tokenizer, generator=generator)
            return {"cross_entropy": out.loss}, {"accuracy": float(out.accuracy)}
        out = model(codes[:, :self.n_q], labels, generator=generator)
        return {"cross_entropy": out.loss}, {f"level_{q}/accuracy": float(a) for q, a in enumerate(out.level_accuracy)}

    def compute(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], step: int) -> StepOutput:
        losses, metrics = self.losses(model, batch)
        return StepOutput(losses, metrics)


@torch.no_grad()
def validate_generator(model: nn.Module, valid: CodedDataset, logger: TrainLogger, step: int,
                       config: GeneratorTrainConfig) -> dict[str, float]:
    """The loss on the valid split, with masks and noise fixed by VALID_SEED."""
    model.eval()
    device = next(model.parameters()).device
    objective = GeneratorObjective(config, model, DistributedEnv(rank=0, world_size=1, device=device))
    generator = torch.Generator(device=device).manual_seed(VALID_SEED)
    total, count = 0.0, 0
    indices = list(range(len(valid)))
    batches = [indices[i:i + 64] for i in range(0, len(indices), 64)]
    for batch in logger.track(batches, len(batches), unit="batch"):
        codes, latents, labels = (t.to(device) for t in collate([valid[i] for i in batch]))
        losses, _ = objective.losses(model, (codes, latents, labels), generator)
        total += float(sum(losses.values())) * len(batch)
        count += len(batch)
    results = {"loss": total / count}
    logger.log_valid(step, results)
    return results


IMAGE_GENERATOR = Task(
    name="image_generator",
    config_class=GeneratorTrainConfig,
    build_model=build_generator,
    build_objective=GeneratorObjective,
    build_data=build_generator_data,
    validate=validate_generator,
    best_metric="loss",
)
