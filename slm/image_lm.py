"""ImageTokenLM: one transformer over the codes of an image [B, Q, h, w] or a video [B, Q, T', h, w],
class-conditional, generating in raster order (AR) or by MaskGIT parallel decoding.

Codes are flattened in raster order (frame by frame for video) to N places; the Q levels of a
place are embedded, one table per level, and summed. The class is the first step (index
num_classes is the null class: unconditional and classifier-free-guided sampling), positions come
from the transformer's RoPE, and one linear head per level predicts that level's code::

    ar       causal         steps [class, t_0, ..., t_{N-2}]   step i predicts t_i
    maskgit  bidirectional  steps [class, t_0, ..., t_{N-1}]   step i + 1 predicts t_i where masked

MaskGIT replaces a masked token by its level's learned MASK embedding (row K_q of the table).
Training replaces labels by the null class with probability cond_dropout; MaskGIT masks
ceil(Q N cos(pi/2 r)) of an item's Q N tokens, r ~ U[0, 1) per item (the cosine schedule), and
scores only those; generation likewise decodes the Q N tokens in one MaskGIT schedule.
Guidance runs the conditional and the null-class batch as one: logits = uncond + cfg (cond - uncond).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.streaming import streaming
from codec.tokens import Tokenizer

from .maskgit import MASKED, mask_schedule, maskgit_decode
from .sampling import SamplingConfig, sample
from .transformer import Transformer, TransformerConfig
from .visual_generation import GenerationOptions, Generated, check_tokenizer


@dataclass(frozen=True)
class ImageTokenLMConfig:
    kind: Literal["ar", "maskgit"]
    codebook_sizes: tuple[int, ...]  # K_q of each level modelled
    grid: tuple[int, ...]  # token axes of one item: (h, w) for images, (T', h, w) for video
    num_classes: int = 0  # 0: unconditional
    transformer: TransformerConfig = field(default_factory=TransformerConfig)  # causal exactly for "ar"
    cond_dropout: float = 0.1  # probability that training replaces a label by the null class (for CFG)
    maskgit_steps: int = 8  # MaskGIT decoding steps when GenerationOptions.steps is 0
    tokenizer: str = ""  # name of the tokenizer whose codes these are
    tokenizer_fingerprint: str = ""  # its codec.checkpoint.model_fingerprint

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(self.codebook_sizes))
        object.__setattr__(self, "grid", tuple(self.grid))
        if self.kind not in ("ar", "maskgit"):
            raise ValueError(f"kind must be 'ar' or 'maskgit', got {self.kind!r}")
        if not self.codebook_sizes or any(k < 2 for k in self.codebook_sizes):
            raise ValueError(f"codebook sizes must be >= 2, got {self.codebook_sizes}")
        if not self.grid or any(g < 1 for g in self.grid):
            raise ValueError(f"grid must be positive token axes such as (h, w) or (T, h, w), got {self.grid}")
        if self.num_classes < 0 or not 0 <= self.cond_dropout < 1 or self.maskgit_steps < 1:
            raise ValueError(f"need num_classes >= 0, 0 <= cond_dropout < 1 and maskgit_steps >= 1, got "
                             f"{self.num_classes}, {self.cond_dropout} and {self.maskgit_steps}")
        if self.transformer.causal != (self.kind == "ar"):
            raise ValueError(f"a {self.kind} model needs a {'causal' if self.kind == 'ar' else 'bidirectional'} "
                             f"transformer: set transformer.causal to {self.kind == 'ar'}")
        if self.num_positions + 1 > self.transformer.max_steps:
            raise ValueError(f"the grid {self.grid} gives {self.num_positions} places plus the class step, more than "
                             f"transformer.max_steps ({self.transformer.max_steps})")

    @property
    def n_q(self) -> int:
        return len(self.codebook_sizes)

    @property
    def num_positions(self) -> int:
        """N: places of one item's grid."""
        return math.prod(self.grid)


@dataclass
class ImageLMOutput:
    logits: list[Tensor]  # per level q: [B, N, K_q], place n predicting t_n
    loss: Tensor  # mean cross-entropy (nats) over every scored token
    level_losses: Tensor  # [Q] mean cross-entropy of each level
    level_accuracy: Tensor  # [Q] top-1 accuracy of each level
    level_counts: Tensor  # [Q] tokens scored per level (MaskGIT: the masked ones)


class ImageTokenLM(nn.Module):
    model_type = "image_token_lm"
    config_class = ImageTokenLMConfig

    def __init__(self, config: ImageTokenLMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.transformer.dim
        mask_rows = 1 if config.kind == "maskgit" else 0
        self.embeddings = nn.ModuleList(nn.Embedding(k + mask_rows, dim) for k in config.codebook_sizes)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)
        # a learned embedding of each place, besides RoPE's relative positions: a bidirectional model
        # (MaskGIT) otherwise knows where a place is only by its offset from the class step
        self.place_embedding = nn.Parameter(torch.randn(config.num_positions, dim) * 0.02)
        self.transformer = Transformer(config.transformer)
        self.heads = nn.ModuleList(nn.Linear(dim, k) for k in config.codebook_sizes)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    # --- the network ---------------------------------------------------------------------------
    def _embed(self, tokens: Tensor, start: int = 0) -> Tensor:
        """Tokens [B, Q, n] of places start .. start + n - 1 (MaskGIT: MASKED where unknown) -> summed
        embeddings [B, n, D]."""
        if self.config.kind == "maskgit":
            sizes = torch.tensor(self.config.codebook_sizes, device=tokens.device)[None, :, None]
            tokens = torch.where(tokens == MASKED, sizes, tokens)
        places = self.place_embedding[start:start + tokens.shape[-1]]
        return sum(embedding(tokens[:, q]) for q, embedding in enumerate(self.embeddings)) + places

    def logits(self, tokens: Tensor, labels: Tensor) -> list[Tensor]:
        """Per level logits from one pass.

        ar: codes [B, Q, n] of the first n < N places -> [B, n + 1, K_q], step i predicting place i.
        maskgit: tokens [B, Q, N] with MASKED places -> [B, N, K_q].
        """
        steps = torch.cat([self.class_embedding(labels)[:, None], self._embed(tokens)], dim=1)
        hidden = self.transformer(steps)
        if self.config.kind == "maskgit":
            hidden = hidden[:, 1:]
        return [head(hidden) for head in self.heads]

    # --- training ------------------------------------------------------------------------------
    def forward(self, codes: Tensor, labels: Tensor | None = None,
                generator: torch.Generator | None = None) -> ImageLMOutput:
        """Losses of codes [B, Q, *grid] with class labels [B] (None: the null class). Training
        drops labels (cond_dropout); MaskGIT draws its masks here (also in eval mode), from
        ``generator`` if given."""
        expected = (self.config.n_q, *self.config.grid)
        if codes.dim() != len(expected) + 1 or tuple(codes.shape[1:]) != expected:
            raise ValueError(f"expected codes [B, {', '.join(map(str, expected))}], got shape {tuple(codes.shape)}")
        b = codes.shape[0]
        tokens = codes.flatten(2).long()  # [B, Q, N]
        labels = self._labels(labels, b, codes.device)
        if self.training and self.config.cond_dropout > 0 and self.config.num_classes > 0:
            dropped = torch.rand(b, generator=generator, device=codes.device) < self.config.cond_dropout
            labels = labels.masked_fill(dropped, self.null_class)
        if self.config.kind == "ar":
            logits = self.logits(tokens[:, :, :-1], labels)
            scored = torch.ones_like(tokens, dtype=torch.bool)
        else:
            scored = self.random_mask(b, codes.device, generator)
            logits = self.logits(tokens.masked_fill(scored, MASKED), labels)
        losses, correct, counts = [], [], []
        for level, level_logits in enumerate(logits):  # [B, N, K_q]
            keep = scored[:, level]
            target, chosen = tokens[:, level][keep], level_logits[keep].float()
            losses.append(F.cross_entropy(chosen, target, reduction="sum"))
            correct.append((chosen.argmax(-1) == target).sum())
            counts.append(keep.sum())
        total, count = torch.stack(losses), torch.stack(counts)
        return ImageLMOutput(logits, total.sum() / count.sum().clamp_min(1), total / count.clamp_min(1),
                             torch.stack(correct).float() / count.clamp_min(1), count)

    def random_mask(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        """MaskGIT's training mask [B, Q, N], True = masked: ceil(Q N cos(pi/2 r)) tokens per item
        (at least one), r ~ U[0, 1) per item, at uniformly random places."""
        total = self.config.n_q * self.config.num_positions
        ratio = torch.rand(batch, generator=generator, device=device)
        count = torch.ceil(mask_schedule(ratio) * total).clamp(1, total)  # [B]
        rank = torch.rand(batch, total, generator=generator, device=device).argsort(1).argsort(1)  # [B, QN]
        return (rank < count[:, None]).view(batch, self.config.n_q, self.config.num_positions)

    # --- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_codes(self, labels: Tensor, options: GenerationOptions = GenerationOptions(),
                     generator: torch.Generator | None = None, use_cache: bool = True) -> tuple[Tensor, int]:
        """Codes [B, Q, *grid] for class labels [B] (num_classes: the null class), and the transformer
        passes it took. AR with ``use_cache`` feeds one step at a time through the KV cache; without
        it every place recomputes the whole prefix (the reference the cache must equal). MaskGIT
        decodes in options.steps steps (0: config.maskgit_steps, at most Q N)."""
        device = self.class_embedding.weight.device
        labels = self._labels(labels, labels.numel(), device)
        b = labels.shape[0]
        guided = options.cfg != 1
        if guided:
            if self.config.num_classes == 0:
                raise ValueError("an unconditional model has nothing to guide: use cfg 1")
            labels = torch.cat([labels, torch.full_like(labels, self.null_class)])

        def guide(logits: Tensor) -> Tensor:  # [2B, ...] -> [B, ...] when guided
            if not guided:
                return logits
            cond, uncond = logits.chunk(2)
            return uncond + options.cfg * (cond - uncond)

        def doubled(tokens: Tensor) -> Tensor:  # the same tokens for both branches
            return torch.cat([tokens, tokens]) if guided else tokens

        sampling = SamplingConfig(temperature=options.temperature, top_k=options.top_k)
        q, n = self.config.n_q, self.config.num_positions
        if self.config.kind == "ar":
            tokens = self._sample_raster(b, labels, guide, doubled, sampling, generator, use_cache)
            passes = n
        else:
            steps = options.steps or min(self.config.maskgit_steps, q * n)
            tokens, passes = maskgit_decode(lambda t: [guide(x) for x in self.logits(doubled(t), labels)], b, n, q,
                                            steps, options, generator, device=device)
        return tokens.view(b, q, *self.config.grid), passes * (2 if guided else 1)

    def _sample_raster(self, b: int, labels: Tensor, guide: Callable[[Tensor], Tensor],
                       doubled: Callable[[Tensor], Tensor], sampling: SamplingConfig,
                       generator: torch.Generator | None, use_cache: bool) -> Tensor:
        """Codes [B, Q, N] place by place; labels [B'] (B' = 2B when guided: conditional, then null)."""
        q, n = self.config.n_q, self.config.num_positions
        codes = labels.new_zeros(b, q, n)
        with streaming(self.transformer, labels.shape[0]) if use_cache else nullcontext():
            for i in range(n):
                if not use_cache:
                    logits = [level[:, -1] for level in self.logits(doubled(codes[:, :, :i]), labels)]
                else:
                    if i == 0:
                        step = self.class_embedding(labels)[:, None]  # [B', 1, D]
                    else:
                        step = self._embed(doubled(codes[:, :, i - 1:i]), start=i - 1)  # the place sampled last
                    hidden = self.transformer(step)[:, -1]
                    logits = [head(hidden) for head in self.heads]
                for level in range(q):
                    codes[:, level, i] = sample(guide(logits[level]), sampling, generator)
        return codes

    @torch.no_grad()
    def generate(self, labels: Tensor, tokenizer: Tokenizer, options: GenerationOptions = GenerationOptions(),
                 generator: torch.Generator | None = None) -> Generated:
        """Images [B, C, H, W] (or videos [B, C, T, H, W]) in [0, 1] for class labels [B], decoded by
        ``tokenizer`` (the one the codes come from) at this model's Q levels."""
        self.check_tokenizer(tokenizer)
        codes, passes = self.sample_codes(labels, options, generator)
        levels = tokenizer.token_spec.n_q
        tokenizer.set_num_codebooks(self.config.n_q)
        try:
            images = tokenizer.decode(codes)
        finally:
            tokenizer.set_num_codebooks(levels)
        return Generated(images, passes)

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """CodecError unless ``tokenizer`` is the one this model's codes come from (by fingerprint)."""
        check_tokenizer(tokenizer, self.config.tokenizer, self.config.tokenizer_fingerprint)

    def _labels(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Class labels [B] on ``device`` (None: the null class); ValueError outside 0..num_classes."""
        if labels is None:
            return torch.full((batch,), self.null_class, dtype=torch.long, device=device)
        if labels.shape != (batch,) or labels.dtype.is_floating_point:
            raise ValueError(f"expected integer class labels [{batch}], got {labels.dtype} of shape "
                             f"{tuple(labels.shape)}")
        if bool(((labels < 0) | (labels > self.null_class)).any()):
            raise ValueError(f"class labels must be in 0..{self.null_class} ({self.null_class}: the null class), "
                             f"got {labels.tolist()}")
        return labels.to(device=device, dtype=torch.long)
