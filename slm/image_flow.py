"""ImageFlowLM: class-conditional generation of continuous image tokens with a flow-matching head
(no quantization: the conv tokenizer's ``encode_latent`` grid [B, D, h, w], normalised per channel
with statistics kept in the config).

The N = h w latents are tokens in raster order, and a transformer's output at a token conditions
the flow head (slm/flow.py) that draws that token's D values from noise. Two orders:

    raster   a causal transformer over [class token, x_1 .. x_(N-1)]: step i predicts x_(i+1)
             (as LatentLM); generation takes N passes, one new token each, with the KV cache
    random   MAR (arXiv 2406.11838): a bidirectional transformer over [class token, x_1 .. x_N] with
             the masked tokens replaced by a learned mask vector; training masks a random fraction
             cos(pi u / 2), u ~ U(0, 1), of each item's tokens and scores the masked ones; generation
             reveals the tokens in a random order in ``steps`` passes (a cosine schedule: few tokens
             first, more later), each pass drawing the tokens it reveals from the head

Token inputs are linear(latent) plus a learned table of the N positions (on top of the
transformer's RoPE over the sequence); in raster order the table entry is that of the token a step
predicts. For classifier-free guidance labels become the null class with probability
``cond_dropout`` in training; sampling runs both branches in one batch (two forward passes counted)
and guides the head's velocity (``sample_head``). The head integrates ``head_steps`` Euler steps in
both orders; ``GenerationOptions.steps`` is the number of MAR passes (0: 8) and unused in raster order.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from codec.streaming import streaming

from .flow import FlowHead, FlowHeadConfig, flow_matching_loss, sample_head
from .transformer import Transformer, TransformerConfig
from .visual_generation import Generated, GenerationOptions, check_tokenizer

DEFAULT_MAR_STEPS = 8


@dataclass(frozen=True)
class ImageFlowLMConfig:
    grid: tuple[int, int]  # (h, w) of the tokenizer's latent grid
    latent_dim: int  # D of the tokenizer's latent
    num_classes: int  # labels 0 .. num_classes - 1; num_classes is the null class (guidance)
    latent_mean: tuple[float, ...]  # [D] per-channel normalisation statistics of the training latents
    latent_std: tuple[float, ...]
    tokenizer: str  # the tokenizer whose latents these are (a name or path)
    tokenizer_fingerprint: str  # its codec.checkpoint.model_fingerprint
    order: Literal["raster", "random"] = "raster"
    cond_dropout: float = 0.1  # training probability of the null class
    head_steps: int = 20  # Euler steps of the head's ODE per token
    transformer: TransformerConfig = field(default_factory=TransformerConfig)  # causal for raster, not for random
    head: FlowHeadConfig = field(default_factory=FlowHeadConfig)

    def __post_init__(self) -> None:
        for name in ("grid", "latent_mean", "latent_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # lists from JSON configs
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive sides (h, w), got {self.grid}")
        if self.latent_dim < 1 or len(self.latent_mean) != self.latent_dim or len(self.latent_std) != self.latent_dim:
            raise ValueError(f"latent_mean and latent_std need latent_dim ({self.latent_dim}) values each")
        if any(not s > 0 for s in self.latent_std):
            raise ValueError(f"latent_std must be positive, got {self.latent_std}")
        if self.order not in ("raster", "random"):
            raise ValueError(f"order must be 'raster' or 'random', got {self.order!r}")
        if self.num_classes < 1 or self.head_steps < 1 or not 0 <= self.cond_dropout < 1:
            raise ValueError(f"need num_classes >= 1, head_steps >= 1 and cond_dropout in [0, 1), got "
                             f"{self.num_classes}, {self.head_steps} and {self.cond_dropout}")
        if self.transformer.causal != (self.order == "raster"):
            raise ValueError(f"order {self.order!r} needs transformer.causal = {self.order == 'raster'}")
        steps = self.num_tokens + (self.order == "random")
        if self.transformer.max_steps < steps:
            raise ValueError(f"transformer.max_steps ({self.transformer.max_steps}) is below the {steps} steps "
                             f"of a {self.grid[0]}x{self.grid[1]} grid")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass
class ImageFlowLMOutput:
    loss: Tensor  # flow-matching loss (mean squared velocity error) over the scored tokens
    tokens: Tensor  # number of scored tokens (raster: all; random: the masked ones)


def latent_statistics(latents: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of latents [B, D, h, w], for ImageFlowLMConfig."""
    flat = latents.detach().double().transpose(0, 1).flatten(1)  # [D, B h w]
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp(min=1e-6).tolist())


def _on(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device | str | None:
    """Where to draw random numbers: the generator's device (a generator draws only there), else ``device``."""
    return generator.device if generator is not None else device


def reveal_schedule(positions: int, steps: int) -> list[int]:
    """Tokens revealed at each of min(steps, positions) MAR steps (each >= 1, summing to ``positions``):
    after step t of T, floor(positions cos(pi t / 2T)) stay masked."""
    if positions < 1 or steps < 1:
        raise ValueError(f"need positions >= 1 and steps >= 1, got {positions} and {steps}")
    steps = min(steps, positions)
    remaining, counts = positions, []
    for t in range(1, steps + 1):
        masked = max(min(math.floor(positions * math.cos(math.pi / 2 * t / steps)), remaining - 1), steps - t)
        counts.append(remaining - masked)
        remaining = masked
    return counts


def reveal_order(batch: int, positions: int, steps: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> list[Tensor]:
    """Each item's positions in a random order, split by ``reveal_schedule``: one [B, count_t] index per step."""
    order = torch.rand(batch, positions, generator=generator, device=_on(generator, device)).argsort(dim=1)
    return list(order.to(device).split(reveal_schedule(positions, steps), dim=1))


class ImageFlowLM(nn.Module):
    """[B] labels -> latents [B, D, h, w] of a conv image tokenizer, token by token (raster) or MAR."""

    model_type = "image_flow_lm"
    config_class = ImageFlowLMConfig

    def __init__(self, config: ImageFlowLMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.transformer.dim
        self.register_buffer("mean", torch.tensor(config.latent_mean)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(config.latent_std)[:, None, None], persistent=False)
        self.classes = nn.Embedding(config.num_classes + 1, dim)  # the last row: the null class
        self.input = nn.Linear(config.latent_dim, dim)
        self.positions = nn.Parameter(torch.randn(config.num_tokens, dim) * 0.02)
        if config.order == "random":
            self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.transformer = Transformer(config.transformer)
        self.head = FlowHead(config.latent_dim, dim, config.head)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def check_tokenizer(self, tokenizer: nn.Module) -> None:
        """CodecError unless ``tokenizer`` is the one the config names (by fingerprint)."""
        check_tokenizer(tokenizer, self.config.tokenizer, self.config.tokenizer_fingerprint)

    def normalize(self, latents: Tensor) -> Tensor:
        return (latents - self.mean) / self.std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.std + self.mean

    def _tokens(self, latents: Tensor) -> Tensor:
        """Normalised latents [B, D, h, w] -> tokens [B, N, D] in raster order."""
        return latents.flatten(2).transpose(1, 2)

    def _grid(self, tokens: Tensor) -> Tensor:
        """Tokens [B, N, D] -> latents [B, D, h, w]."""
        return tokens.transpose(1, 2).unflatten(2, self.config.grid)

    def _check_labels(self, labels: Tensor) -> None:
        if labels.dim() != 1 or labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.null_class:
            raise ValueError(f"labels must be [B] class indices in 0..{self.null_class - 1}, got {labels.tolist()}")

    # --- the two orders' transformer inputs --------------------------------------------------------
    def _raster_hidden(self, classes: Tensor, tokens: Tensor) -> Tensor:
        """Class embeddings [B, dim], tokens [B, N, D] -> outputs [B, N, dim], step i predicting token i."""
        inputs = torch.cat([classes[:, None], self.input(tokens[:, :-1])], dim=1)
        return self.transformer(inputs + self.positions)

    def _random_hidden(self, classes: Tensor, tokens: Tensor, known: Tensor) -> Tensor:
        """Class embeddings [B, dim], tokens [B, N, D], known [B, N] bool (False: masked) -> outputs [B, N, dim]."""
        x = torch.where(known[..., None], self.input(tokens), self.mask_token) + self.positions
        return self.transformer(torch.cat([classes[:, None], x], dim=1))[:, 1:]

    # --- training ------------------------------------------------------------------------------------
    def forward(self, latents: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> ImageFlowLMOutput:
        """Flow-matching loss of raw latents [B, D, h, w] (the tokenizer's encode_latent) given labels [B]."""
        self._check_labels(labels)
        b, n = labels.shape[0], self.config.num_tokens
        if latents.shape != (b, self.config.latent_dim, *self.config.grid):
            raise ValueError(f"expected latents [B={b}, {self.config.latent_dim}, {self.config.grid[0]}, "
                             f"{self.config.grid[1]}], got {tuple(latents.shape)}")
        if self.training and self.config.cond_dropout > 0:
            drop = torch.rand(labels.shape, generator=generator, device=_on(generator, labels.device))
            drop = drop.to(labels.device) < self.config.cond_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        tokens = self._tokens(self.normalize(latents))  # [B, N, D]
        classes = self.classes(labels)
        if self.config.order == "raster":
            hidden, tokens_scored = self._raster_hidden(classes, tokens).flatten(0, 1), tokens.flatten(0, 1)
        else:
            where = _on(generator, latents.device)
            fraction = torch.cos(math.pi / 2 * torch.rand(b, generator=generator, device=where))
            count = (fraction * n).ceil().clamp(1, n).to(latents.device)  # masked tokens per item
            rank = torch.rand(b, n, generator=generator, device=where).argsort(1).argsort(1).to(latents.device)
            masked = rank < count[:, None]  # [B, N]
            hidden, tokens_scored = self._random_hidden(classes, tokens, ~masked)[masked], tokens[masked]
        loss = flow_matching_loss(self.head, tokens_scored.float(), hidden.float(), self.config.head, generator)
        return ImageFlowLMOutput(loss, torch.tensor(tokens_scored.shape[0]))

    # --- generation ----------------------------------------------------------------------------------
    def forward_passes(self, options: GenerationOptions) -> int:
        """Transformer passes of one ``generate`` call: raster N, random the MAR steps; twice with guidance."""
        n = self.config.num_tokens
        passes = n if self.config.order == "raster" else len(reveal_schedule(n, options.steps or DEFAULT_MAR_STEPS))
        return passes * (2 if options.cfg != 1 else 1)

    def _draw(self, hidden: Tensor, options: GenerationOptions, generator: torch.Generator | None) -> Tensor:
        """Outputs [B or 2B (guided: conditional, then unconditional), M, dim] -> tokens [B, M, D] from the head."""
        guided = options.cfg != 1
        cond, null = hidden.chunk(2) if guided else (hidden, None)
        b, m, _ = cond.shape
        tokens = sample_head(self.head, cond.flatten(0, 1).float(), self.config.head_steps, "euler",
                             options.temperature, options.cfg, null.flatten(0, 1).float() if guided else None,
                             generator=generator)
        return tokens.view(b, m, -1).to(hidden.dtype)

    def _generate_raster(self, classes: Tensor, b: int, options: GenerationOptions,
                         generator: torch.Generator | None, use_cache: bool) -> Tensor:
        """Class embeddings [B or 2B, dim] -> tokens [B, N, D], one per transformer pass."""
        branches = classes.shape[0] // b
        inputs = (classes + self.positions[0])[:, None]  # [B or 2B, 1, dim]
        tokens: list[Tensor] = []
        fed = 0
        with streaming(self.transformer, classes.shape[0]) if use_cache else nullcontext():
            for i in range(self.config.num_tokens):
                hidden = self.transformer(inputs[:, fed:] if use_cache else inputs)[:, -1:]  # [B or 2B, 1, dim]
                fed = inputs.shape[1]
                tokens.append(self._draw(hidden, options, generator))  # [B, 1, D]
                if i + 1 < self.config.num_tokens:
                    step = (self.input(tokens[-1]) + self.positions[i + 1]).repeat(branches, 1, 1)
                    inputs = torch.cat([inputs, step], dim=1)
        return torch.cat(tokens, dim=1)

    def _generate_random(self, classes: Tensor, b: int, options: GenerationOptions,
                         generator: torch.Generator | None) -> Tensor:
        """Class embeddings [B or 2B, dim] -> tokens [B, N, D], revealed in a random order over the MAR steps."""
        branches, n, d = classes.shape[0] // b, self.config.num_tokens, self.config.latent_dim
        tokens = classes.new_zeros(b, n, d)
        known = torch.zeros(b, n, dtype=torch.bool, device=classes.device)
        for index in reveal_order(b, n, options.steps or DEFAULT_MAR_STEPS, generator, classes.device):
            hidden = self._random_hidden(classes, tokens.repeat(branches, 1, 1), known.repeat(branches, 1))
            picked = hidden.gather(1, index.repeat(branches, 1)[..., None].expand(-1, -1, hidden.shape[-1]))
            tokens = tokens.scatter(1, index[..., None].expand(-1, -1, d), self._draw(picked, options, generator))
            known = known.scatter(1, index, True)
        return tokens

    @torch.no_grad()
    def sample_latents(self, labels: Tensor, options: GenerationOptions = GenerationOptions(),
                       generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
        """Labels [B] -> raw (denormalised) latents [B, D, h, w]; ``options.order`` must be the config's.
        ``use_cache`` (raster): False recomputes the whole prefix every pass (the same result, slower)."""
        self._check_labels(labels)
        if options.order != self.config.order:
            raise ValueError(f"this model generates in {self.config.order} order, not {options.order}")
        classes = self.classes(labels)
        if options.cfg != 1:
            classes = torch.cat([classes, self.classes(torch.full_like(labels, self.null_class))])
        b = labels.shape[0]
        if self.config.order == "raster":
            tokens = self._generate_raster(classes, b, options, generator, use_cache)
        else:
            tokens = self._generate_random(classes, b, options, generator)
        return self.denormalize(self._grid(tokens))

    @torch.no_grad()
    def generate(self, labels: Tensor, tokenizer: nn.Module, options: GenerationOptions = GenerationOptions(),
                 generator: torch.Generator | None = None) -> Generated:
        """Labels [B] -> images [B, C, H, W] in [0, 1]: sampled latents through ``tokenizer.decode_latent``
        (the config's tokenizer, checked)."""
        self.check_tokenizer(tokenizer)
        latents = self.sample_latents(labels, options, generator)
        return Generated(tokenizer.decode_latent(latents), self.forward_passes(options))
