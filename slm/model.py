"""TokenLM: an autoregressive transformer over multi-codebook tokens [B, Q, T].

A codebook pattern (patterns.py) turns the codes into steps [B, Q, S]. The input at step s is
the previous step's tokens, each level through its own embedding, summed (a begin token at
s = 0); level q's head at step s predicts level q's token of step s. Places that hold no code
(the pattern's gaps) use an ``empty`` token and are not scored. Frames past a sequence's
length (batches of different lengths) are padding: not scored, and not attended to.

Embedding tables have K_q + 2 rows: the K_q codes, ``empty`` = K_q and ``begin`` = K_q + 1.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.streaming import streaming

from .depth import DepthHead
from .patterns import Pattern, PatternName
from .sampling import SamplingConfig, sample
from .transformer import Transformer, TransformerConfig


@dataclass(frozen=True)
class TokenLMConfig:
    codebook_sizes: tuple[int, ...]  # K_q of each level the LM models
    frame_rate: float  # frames per second of the tokens (for bits per second)
    pattern: PatternName = "delay"
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    tokenizer: str = ""  # name of the tokenizer whose codes these are (prompts must come from it)
    tokenizer_fingerprint: str = ""
    depth: TransformerConfig | None = None  # a depth transformer over each step's levels (parallel pattern only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(self.codebook_sizes))
        if not self.codebook_sizes or any(k < 2 for k in self.codebook_sizes):
            raise ValueError(f"codebook sizes must be >= 2, got {self.codebook_sizes}")
        if not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {self.frame_rate}")
        Pattern(self.pattern, len(self.codebook_sizes))  # validates the name
        if self.depth is not None and self.pattern != "parallel":
            raise ValueError(f"a depth transformer predicts all levels of a frame at one step: use the parallel "
                             f"pattern, not {self.pattern!r}")

    @property
    def n_q(self) -> int:
        return len(self.codebook_sizes)


@dataclass
class LMOutput:
    logits: list[Tensor]  # per level q: [B, T, K_q], aligned to frames
    loss: Tensor  # mean cross-entropy (nats) over every scored token
    level_losses: Tensor  # [Q] mean cross-entropy of each level
    level_accuracy: Tensor  # [Q] top-1 accuracy of each level
    level_counts: Tensor  # [Q] tokens scored per level


class TokenLM(nn.Module):
    model_type = "token_lm"
    config_class = TokenLMConfig

    def __init__(self, config: TokenLMConfig) -> None:
        super().__init__()
        self.config = config
        self.pattern = Pattern(config.pattern, config.n_q)
        dim = config.transformer.dim
        self.embeddings = nn.ModuleList(nn.Embedding(k + 2, dim) for k in config.codebook_sizes)
        self.transformer = Transformer(config.transformer)
        if config.depth is None:
            self.heads = nn.ModuleList(nn.Linear(dim, k) for k in config.codebook_sizes)
        else:
            self.depth = DepthHead(config.depth, config.codebook_sizes, dim)

    @property
    def max_frames(self) -> int:
        """The most frames whose steps fit the transformer (its max_steps)."""
        frames = self.config.transformer.max_steps
        while frames > 1 and self.pattern.num_steps(frames) > self.config.transformer.max_steps:
            frames -= 1
        return frames

    def _embed(self, steps: Tensor) -> Tensor:
        """Tokens [B, Q, S] -> summed embeddings [B, S, D]."""
        return sum(emb(steps[:, q]) for q, emb in enumerate(self.embeddings))

    def _begin(self, batch: int, device: torch.device) -> Tensor:
        return torch.tensor([k + 1 for k in self.config.codebook_sizes], device=device)[None, :, None].expand(batch, -1, 1)

    def step_logits(self, steps: Tensor, targets: Tensor | None = None) -> list[Tensor]:
        """Input tokens [B, Q, S'] -> per level logits [B, S', K_q] for the next step each; a depth
        model needs the ``targets`` [B, Q, S'] of those steps (its levels see the lower ones)."""
        hidden = self.transformer(self._embed(steps))
        if self.config.depth is None:
            return [head(hidden) for head in self.heads]
        b, q, s = targets.shape
        top = torch.tensor(self.config.codebook_sizes, device=targets.device)[None, :, None] - 1
        flat = torch.minimum(targets, top).permute(0, 2, 1).reshape(b * s, q)  # (empty places are not scored)
        return [logits.view(b, s, -1) for logits in self.depth(hidden.reshape(b * s, -1), flat)]

    def forward(self, codes: Tensor, lengths: Tensor | None = None) -> LMOutput:
        """Teacher-forced logits and losses of codes [B, Q, T]; lengths [B] frames (default: all T).

        A padded item's places past its length hold the empty token, as at the end of a sequence of
        its own length, so (the model being causal) its losses equal those of the item alone.
        """
        b, q, t = codes.shape
        if lengths is not None and not self.pattern.extends_at_the_end and bool((lengths != t).any()):
            raise ValueError(f"the {self.pattern.name} pattern needs sequences of equal length in a batch")
        layout = self.pattern.layout(t, codes.device)  # [Q, S]
        steps = codes.gather(2, layout.clamp_min(0)[None].expand(b, -1, -1))  # [B, Q, S]
        frame_limit = torch.full((b,), t, device=codes.device) if lengths is None else lengths.to(codes.device)
        scored = (layout[None] >= 0) & (layout[None] < frame_limit[:, None, None])  # [B, Q, S]
        steps = torch.where(scored, steps, self._empty(codes.device)[None, :, None])
        inputs = torch.cat([self._begin(b, codes.device), steps[:, :, :-1]], dim=2)
        logits = self.step_logits(inputs, steps)
        step_of_frame = self.pattern.step_of_frame(t, codes.device)  # [Q, T]
        losses, accuracy, counts, frame_logits = [], [], [], []
        for level, level_logits in enumerate(logits):  # [B, S, K_q]
            keep = scored[:, level]
            target, chosen = steps[:, level][keep], level_logits[keep]
            losses.append(F.cross_entropy(chosen.float(), target, reduction="sum"))
            accuracy.append((chosen.argmax(-1) == target).sum())
            counts.append(keep.sum())
            index = step_of_frame[level][None, :, None].expand(b, t, level_logits.shape[-1])
            frame_logits.append(level_logits.gather(1, index))
        counts_t = torch.stack(counts)
        total = torch.stack(losses)
        return LMOutput(frame_logits, total.sum() / counts_t.sum().clamp_min(1), total / counts_t.clamp_min(1),
                        torch.stack(accuracy).float() / counts_t.clamp_min(1), counts_t)

    def _empty(self, device: torch.device) -> Tensor:
        return torch.tensor(self.config.codebook_sizes, device=device)

    @torch.no_grad()
    def generate(self, prompt: Tensor, num_frames: int, sampling: SamplingConfig = SamplingConfig(),
                 generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
        """Continue prompt codes [B, Q, P] to [B, Q, P + num_frames]; the prompt's codes are kept.

        With ``use_cache`` each step runs only the new step through the KV cache; without it,
        every step recomputes the whole prefix (the reference the cache must equal).
        """
        b, q, p = prompt.shape
        total = p + num_frames
        codes = torch.cat([prompt, prompt.new_zeros(b, q, num_frames)], dim=2)
        layout = self.pattern.layout(total, prompt.device)  # [Q, S]
        empty = self._empty(prompt.device)
        inputs = [self._begin(b, prompt.device)]  # the token columns fed so far, [B, Q, 1] each
        with streaming(self.transformer, b) if use_cache else nullcontext():
            fed = 0  # columns already in the KV cache
            for s in range(layout.shape[1]):
                to_generate = [level for level in range(q) if int(layout[level, s]) >= p]
                if to_generate:  # steps of prompt codes only are fed later, in one chunk with this one
                    fresh = torch.cat(inputs[fed:] if use_cache else inputs, dim=2)
                    fed = len(inputs)

                def choose(level: int, level_logits: Tensor) -> Tensor:
                    frame = int(layout[level, s])
                    history = codes[:, level, max(0, frame - sampling.repetition_window):frame]
                    return sample(level_logits, sampling, generator, history)

                if to_generate and self.config.depth is not None:  # parallel: every level of frame s at once
                    context = self.transformer(self._embed(fresh))[:, -1]
                    codes[:, :, s] = self.depth.generate(context, choose)
                elif to_generate:
                    logits = self.step_logits(fresh)
                    for level in to_generate:
                        codes[:, level, layout[level, s]] = choose(level, logits[level][:, -1])
                column = torch.where(layout[:, s] >= 0, codes[:, torch.arange(q), layout[:, s].clamp_min(0)],
                                     empty[None])
                inputs.append(column[:, :, None])
        return codes
