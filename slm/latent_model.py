"""LatentLM: an autoregressive transformer over continuous latent frames [B, D, T] with a flow-matching
head (MAR, NextStep-1, DiTAR), no quantization in the loop.

Frames are normalised per dimension with the shards' statistics (kept in the config) and grouped in
patches of ``patch`` frames: one transformer step per patch, its input the previous patch through a
linear projection (a learned begin vector at step 0). The transformer's output at step s conditions
the flow head (slm/flow.py), which draws patch s [patch * D] from noise. For classifier-free
guidance the head's condition is replaced by a learned null vector with probability
``cond_dropout`` in training. Generation stops at a given length. Padding past an item's length is
never attended to (the transformer is causal) and never scored; patches that reach past the length
are not scored either.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import get_args

import torch
from torch import Tensor, nn

from codec.streaming import streaming

from .flow import FlowHead, FlowHeadConfig, FlowSolver, flow_matching_loss, sample_head
from .transformer import Transformer, TransformerConfig


@dataclass(frozen=True)
class LatentLMConfig:
    latent_dim: int  # D of the codec's latent
    frame_rate: float  # latent frames per second
    latent_mean: tuple[float, ...]  # [D] normalisation statistics of the training latents
    latent_std: tuple[float, ...]
    patch: int = 1  # frames per autoregressive step
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head: FlowHeadConfig = field(default_factory=FlowHeadConfig)
    cond_dropout: float = 0.1  # training probability of the null condition (for guidance)
    tokenizer: str = ""  # the codec whose latents these are (prompts must come from it)
    tokenizer_fingerprint: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_mean", tuple(self.latent_mean))
        object.__setattr__(self, "latent_std", tuple(self.latent_std))
        if self.latent_dim < 1 or len(self.latent_mean) != self.latent_dim or len(self.latent_std) != self.latent_dim:
            raise ValueError(f"latent_mean and latent_std need latent_dim ({self.latent_dim}) values each")
        if any(not s > 0 for s in self.latent_std):
            raise ValueError("latent_std must be positive")
        if not self.frame_rate > 0 or self.patch < 1 or not 0 <= self.cond_dropout < 1:
            raise ValueError("frame_rate must be positive, patch >= 1 and cond_dropout in [0, 1)")


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 20  # ODE steps of the flow head per patch
    solver: FlowSolver = "euler"
    temperature: float = 1.0  # scale of the initial noise
    guidance: float = 1.0  # classifier-free guidance scale (1: none)
    shift: float = 1.0  # time shift of the ODE grid (> 1: more steps near the noise)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.solver not in get_args(FlowSolver):
            raise ValueError(f"head steps must be >= 1 and the solver one of {', '.join(get_args(FlowSolver))}")
        if not (0 <= self.temperature < math.inf and math.isfinite(self.guidance) and 0 < self.shift < math.inf):
            raise ValueError("temperature must be >= 0, guidance finite and shift positive")


@dataclass
class LatentLMOutput:
    loss: Tensor  # flow-matching loss (mean squared velocity error) over the scored patches
    patches: Tensor  # number of scored patches


class LatentLM(nn.Module):
    model_type = "latent_lm"
    config_class = LatentLMConfig

    def __init__(self, config: LatentLMConfig) -> None:
        super().__init__()
        self.config = config
        dim, width = config.transformer.dim, config.patch * config.latent_dim
        self.register_buffer("mean", torch.tensor(config.latent_mean)[:, None], persistent=False)
        self.register_buffer("std", torch.tensor(config.latent_std)[:, None], persistent=False)
        self.input = nn.Linear(width, dim)
        self.begin = nn.Parameter(torch.randn(dim) * 0.02)
        self.null_condition = nn.Parameter(torch.randn(dim) * 0.02)
        self.transformer = Transformer(config.transformer)
        self.head = FlowHead(width, dim, config.head)

    @property
    def max_frames(self) -> int:
        """The most frames that fit the transformer (its max_steps patches)."""
        return self.config.transformer.max_steps * self.config.patch

    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.mean) / self.std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.std + self.mean

    def _patches(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, D, T] (T a multiple of patch) -> patches [B, T / patch, patch * D]."""
        b, d, t = latents.shape
        k = self.config.patch
        return latents.view(b, d, t // k, k).permute(0, 2, 3, 1).reshape(b, t // k, k * d)

    def _frames(self, patches: Tensor) -> Tensor:
        """Patches [B, S, patch * D] -> latents [B, D, S * patch]."""
        b, s, _ = patches.shape
        k, d = self.config.patch, self.config.latent_dim
        return patches.view(b, s, k, d).permute(0, 3, 1, 2).reshape(b, d, s * k)

    def _inputs(self, patches: Tensor) -> Tensor:
        """Patches [B, S, W] -> transformer inputs [B, S, dim]: begin, then patches 0..S-2."""
        begin = self.begin.expand(patches.shape[0], 1, -1)
        return torch.cat([begin, self.input(patches[:, :-1])], dim=1)

    def forward(self, latents: Tensor, lengths: Tensor | None = None, generator: torch.Generator | None = None) -> LatentLMOutput:
        """Flow-matching loss of raw latents [B, D, T] (lengths [B] frames; default all T)."""
        b, _, t = latents.shape
        k = self.config.patch
        usable = t - t % k
        patches = self._patches(self.normalize(latents[..., :usable]))  # [B, S, W]
        hidden = self.transformer(self._inputs(patches))  # [B, S, dim]: step s predicts patch s
        limit = torch.full((b,), t, device=latents.device) if lengths is None else lengths.to(latents.device)
        scored = (torch.arange(patches.shape[1], device=latents.device)[None] + 1) * k <= limit[:, None]  # [B, S]
        condition = hidden[scored]
        if self.training and self.config.cond_dropout > 0:
            drop = torch.rand(condition.shape[0], device=condition.device, generator=generator) < self.config.cond_dropout
            condition = torch.where(drop[:, None], self.null_condition.to(condition.dtype), condition)
        loss = flow_matching_loss(self.head, patches[scored].float(), condition.float(), self.config.head, generator)
        return LatentLMOutput(loss, scored.sum())

    @torch.no_grad()
    def generate(self, prompt: Tensor, num_frames: int, options: SamplingOptions = SamplingOptions(),
                 generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
        """Continue raw prompt latents [B, D, P] (P a multiple of patch) by ``num_frames`` frames
        (rounded up to whole patches): [B, D, P + num_frames]; the prompt is kept as given."""
        b, _, p = prompt.shape
        k = self.config.patch
        if p % k:
            raise ValueError(f"the prompt's {p} frames are not a multiple of the patch ({k})")
        new_patches = -(-num_frames // k)
        if p // k + new_patches > self.config.transformer.max_steps:
            raise ValueError(f"{p} + {num_frames} frames exceed the model's {self.max_frames}")
        patches = self._patches(self.normalize(prompt))  # [B, P / k, W]
        null = self.null_condition if options.guidance != 1 else None
        inputs = torch.cat([self.begin.expand(b, 1, -1), self.input(patches)], dim=1)  # [B, P / k + 1, dim]
        fed = 0
        with streaming(self.transformer, b) if use_cache else nullcontext():
            for _ in range(new_patches):
                hidden = self.transformer(inputs[:, fed:] if use_cache else inputs)[:, -1]  # [B, dim]
                fed = inputs.shape[1]
                patch = sample_head(self.head, hidden.float(), options.steps, options.solver, options.temperature,
                                    options.guidance, null, options.shift, generator)  # [B, W]
                patches = torch.cat([patches, patch[:, None]], dim=1)
                inputs = torch.cat([inputs, self.input(patch)[:, None]], dim=1)
        generated = self.denormalize(self._frames(patches[:, p // k:]))[..., :num_frames]
        return torch.cat([prompt, generated], dim=2)
