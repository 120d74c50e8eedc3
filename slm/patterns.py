"""Codebook patterns: how multi-codebook codes [B, Q, T] become one sequence of model steps.

A pattern is a layout [Q, S]: at step s, level q holds the code of frame ``layout[q, s]``, or
nothing (-1). ``build`` gathers codes into steps, filling the empty places with a special
token; ``revert`` gathers step-aligned values (codes, logits, losses) back to frames. Q = 3:

    parallel      s:  0  1  2  3          every level of frame s at step s        (T steps)
                  q0  0  1  2  3
                  q1  0  1  2  3
    delay         q0  0  1  2  3  .  .    level q delayed by q steps (MusicGen)   (T + Q - 1)
                  q1  .  0  1  2  3  .
                  q2  .  .  0  1  2  3
    flatten       q0  0  .  .  1  .  .    one level per step                      (Q T)
                  q1  .  0  .  .  1  .
                  q2  .  .  0  .  .  1
    coarse_first  q0  0  1  2  3  .  .  .  .   the first level of every frame, then the other
                  q1  .  .  .  .  0  1  2  3   levels frame by frame (VALL-E)     (2 T)

Predicting step s sees the steps before it, so a level's code can depend on every code placed
earlier: in delay, level q of frame t sees levels < q of frames <= t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

PatternName = Literal["parallel", "delay", "flatten", "coarse_first"]
EMPTY = -1  # layout value of a place that holds no code


@dataclass(frozen=True)
class Pattern:
    """One of the layouts above for ``n_q`` levels (``delays``: per-level delay of "delay")."""

    name: PatternName
    n_q: int
    delays: tuple[int, ...] = ()  # "delay" only; default 0, 1, ..., n_q - 1

    def __post_init__(self) -> None:
        if self.name not in get_args(PatternName):
            raise ValueError(f"unknown pattern {self.name!r}; expected one of {', '.join(get_args(PatternName))}")
        if self.n_q < 1:
            raise ValueError(f"n_q must be >= 1, got {self.n_q}")
        if self.name == "delay":
            delays = self.delays or tuple(range(self.n_q))
            if len(delays) != self.n_q or min(delays) != 0 or any(d < 0 for d in delays):
                raise ValueError(f"delays must be {self.n_q} non-negative steps starting at 0, got {delays}")
            object.__setattr__(self, "delays", tuple(delays))
        elif self.delays:
            raise ValueError(f"delays apply to the delay pattern only, not {self.name!r}")

    @property
    def extends_at_the_end(self) -> bool:
        """Whether more frames only add steps after the existing ones (true but for coarse_first,
        whose second part starts after all the frames): then sequences of different lengths can
        share a batch, padded at the end."""
        return self.name != "coarse_first"

    def num_steps(self, num_frames: int) -> int:
        """Steps of a sequence of ``num_frames`` frames."""
        t, q = num_frames, self.n_q
        return {"parallel": t, "delay": t + max(self.delays, default=0), "flatten": q * t,
                "coarse_first": t if q == 1 else 2 * t}[self.name]

    def layout(self, num_frames: int, device: torch.device | str | None = None) -> Tensor:
        """[Q, S] int64: the frame whose code level q holds at step s, or EMPTY."""
        t, q, steps = num_frames, self.n_q, self.num_steps(num_frames)
        s = torch.arange(steps, device=device)[None, :]  # [1, S]
        level = torch.arange(q, device=device)[:, None]  # [Q, 1]
        if self.name == "parallel":
            frame = s.expand(q, steps)
        elif self.name == "delay":
            frame = s - torch.tensor(self.delays, device=device)[:, None]
        elif self.name == "flatten":
            frame = torch.where(s % q == level, s // q, EMPTY)
        else:  # coarse_first: level 0 at steps [0, T), the others at [T, 2T)
            frame = torch.where(level == 0, s, s - t)
            frame = torch.where((level == 0) == (s < t), frame, EMPTY)
        return torch.where((frame >= 0) & (frame < t), frame, EMPTY)

    def valid(self, num_frames: int, device: torch.device | str | None = None) -> Tensor:
        """[Q, S] bool: which places hold a code."""
        return self.layout(num_frames, device) != EMPTY

    def build(self, codes: Tensor, empty_token: int) -> tuple[Tensor, Tensor]:
        """Codes [B, Q, T] -> (steps [B, Q, S] with ``empty_token`` where no code is, valid [Q, S])."""
        batch, q, t = codes.shape
        if q != self.n_q:
            raise ValueError(f"the pattern has {self.n_q} levels, the codes {q}")
        layout = self.layout(t, codes.device)  # [Q, S]
        valid = layout != EMPTY
        steps = codes.gather(2, layout.clamp_min(0)[None].expand(batch, -1, -1))
        return torch.where(valid, steps, empty_token), valid

    def revert(self, steps: Tensor, num_frames: int) -> Tensor:
        """Step-aligned values [B, Q, S, *rest] (codes, logits, ...) -> frame-aligned [B, Q, T, *rest]."""
        batch, q, s = steps.shape[:3]
        if q != self.n_q or s != self.num_steps(num_frames):
            raise ValueError(f"expected [B, {self.n_q}, {self.num_steps(num_frames)}, ...] steps for "
                             f"{num_frames} frames, got {tuple(steps.shape)}")
        step_of = self.step_of_frame(num_frames, steps.device)  # [Q, T]
        index = step_of.view(1, q, num_frames, *[1] * (steps.dim() - 3))
        return steps.gather(2, index.expand(batch, q, num_frames, *steps.shape[3:]))

    def step_of_frame(self, num_frames: int, device: torch.device | str | None = None) -> Tensor:
        """[Q, T] int64: the step at which level q of frame t is placed (every code has one)."""
        layout = self.layout(num_frames, device)
        level, step = torch.nonzero(layout != EMPTY, as_tuple=True)
        out = torch.empty(self.n_q, num_frames, dtype=torch.long, device=layout.device)
        out[level, layout[level, step]] = step
        return out
