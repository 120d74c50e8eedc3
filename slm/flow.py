"""Flow matching for continuous latents: the small per-position head of a continuous-latent
autoregressive LM (MAR, NextStep-1, DiTAR), its training loss and its ODE sampler.

Convention (rectified flow): x_t = t x + (1 - t) noise, so t = 0 is noise and t = 1 is data, and the
velocity dx_t/dt = x - noise. The head predicts that velocity from (x_t, t, condition); sampling
integrates dx/dt = v(x, t) from Gaussian noise at t = 0 to t = 1 with Euler, midpoint or Heun steps
on a grid that a time shift can make denser near the noise end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

FlowSolver = Literal["euler", "midpoint", "heun"]
TimeSampling = Literal["uniform", "logit_normal"]

_EPS = 1e-5  # training times stay in [eps, 1 - eps]


@dataclass(frozen=True)
class FlowHeadConfig:
    dim: int = 256  # width of the residual MLP
    blocks: int = 3  # residual blocks
    time_sampling: TimeSampling = "logit_normal"
    logit_mean: float = 0.0  # logit-normal time: sigmoid(N(mean, std))
    logit_std: float = 1.0
    noise_draws: int = 4  # noise draws per position in the loss (MAR's diffusion batch multiplier)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.blocks < 1 or self.noise_draws < 1 or not self.logit_std > 0:
            raise ValueError(f"need dim, blocks and noise_draws >= 1 and logit_std > 0, got {self}")
        if self.time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling must be 'uniform' or 'logit_normal', got {self.time_sampling!r}")


def time_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of times t [N] in [0, 1] (scaled by 1000, as DiT's timesteps) -> [N, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000 * t.float()[:, None] * freqs[None]  # [N, dim / 2]
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return torch.cat([emb, emb.new_zeros(t.shape[0], dim % 2)], dim=-1)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """x + gate * mlp(norm(x) * (1 + scale) + shift), with (shift, scale, gate) from the condition."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x [N, dim], c [N, dim] -> [N, dim]."""
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate * self.mlp(_modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    """MLP of residual blocks, each adaLN-modulated (shift, scale, gate from SiLU(cond + time embedding)),
    output layer zero-initialised (so the initial velocity is 0), as MAR's SimpleMLPAdaLN."""

    def __init__(self, latent_dim: int, cond_dim: int, config: FlowHeadConfig) -> None:
        super().__init__()
        if latent_dim < 1 or cond_dim < 1:
            raise ValueError(f"latent_dim ({latent_dim}) and cond_dim ({cond_dim}) must be positive")
        self.latent_dim, self.cond_dim, self.config = latent_dim, cond_dim, config
        dim = config.dim
        self.input = nn.Linear(latent_dim, dim)
        self.time = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.cond = nn.Linear(cond_dim, dim)
        self.blocks = nn.ModuleList(ResBlock(dim) for _ in range(config.blocks))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, latent_dim)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.out_modulation[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x_t [N, D], t [N] in [0, 1] (or a scalar), cond [N, C] -> velocity [N, D]."""
        t = t.reshape(-1).expand(x_t.shape[0])
        c = self.time(time_embedding(t, 256).to(x_t.dtype)) + self.cond(cond)  # [N, dim]
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.out_modulation(c).chunk(2, dim=-1)
        return self.out(_modulate(self.norm(h), shift, scale))


def sample_time(n: int, config: FlowHeadConfig, device: torch.device | str | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Training times [n] in (0, 1): uniform, or logit-normal sigmoid(N(logit_mean, logit_std))."""
    if config.time_sampling == "uniform":
        t = torch.rand(n, device=device, generator=generator)
    else:
        t = torch.sigmoid(config.logit_mean + config.logit_std * torch.randn(n, device=device, generator=generator))
    return t.clamp(_EPS, 1 - _EPS)


def interpolate(x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = t x + (1 - t) noise for x, noise [N, ...] and t [N] (broadcast over the feature dims)."""
    t = t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return t * x + (1 - t) * noise


def flow_matching_loss(head: FlowHead, x: Tensor, cond: Tensor, config: FlowHeadConfig,
                       generator: torch.Generator | None = None) -> Tensor:
    """Mean squared velocity error (over rows and features, a scalar) of targets x [N, D] given
    cond [N, C], each row with ``noise_draws`` draws of (noise, t); the target velocity is x - noise.
    No rows give 0 (still attached to the head's graph)."""
    if x.dim() != 2 or cond.dim() != 2 or x.shape[0] != cond.shape[0]:
        raise ValueError(f"need x [N, D] and cond [N, C], got {tuple(x.shape)} and {tuple(cond.shape)}")
    x = x.repeat_interleave(config.noise_draws, dim=0)
    cond = cond.repeat_interleave(config.noise_draws, dim=0)
    t = sample_time(x.shape[0], config, x.device, generator)
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    error = (head(interpolate(x, noise, t), t, cond) - (x - noise)).square()
    return error.mean() if error.numel() else error.sum()


def flow_times(steps: int, shift: float = 1.0, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """The ODE grid [steps + 1] from 0 (noise) to 1 (data): t' = t / (t + shift (1 - t)) of the
    uniform grid t (SD3's shift, sigma' = shift sigma / (1 + (shift - 1) sigma) with sigma = 1 - t).
    shift > 1 spends more of the steps near the noise end; shift == 1 is the uniform grid."""
    if steps < 1 or not shift > 0:
        raise ValueError(f"need steps >= 1 and shift > 0, got steps={steps}, shift={shift}")
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    if shift != 1:
        t = t / (t + shift * (1 - t))
    return t.to(device=device, dtype=dtype)


def integrate(velocity: Callable[[Tensor, Tensor], Tensor], x0: Tensor, steps: int, solver: FlowSolver = "euler",
              shift: float = 1.0) -> Tensor:
    """Solve dx/dt = velocity(x [N, D], t [N]) from x0 [N, D] at t = 0 to t = 1 over flow_times(steps, shift):
    Euler (1 velocity call per step), midpoint (2) or Heun (2: Euler predictor, trapezoid corrector)."""
    if solver not in ("euler", "midpoint", "heun"):
        raise ValueError(f"solver must be 'euler', 'midpoint' or 'heun', got {solver!r}")
    grid = flow_times(steps, shift, dtype=torch.float64).tolist()
    x = x0

    def v(x: Tensor, t: float) -> Tensor:
        return velocity(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))

    for t0, t1 in zip(grid[:-1], grid[1:]):
        h = t1 - t0
        k1 = v(x, t0)
        if solver == "euler":
            x = x + h * k1
        elif solver == "midpoint":
            x = x + h * v(x + 0.5 * h * k1, t0 + 0.5 * h)
        else:
            x = x + 0.5 * h * (k1 + v(x + h * k1, t1))
    return x


@torch.no_grad()
def sample_head(head: FlowHead, cond: Tensor, steps: int = 20, solver: FlowSolver = "euler", temperature: float = 1.0,
                guidance: float = 1.0, null_cond: Tensor | None = None, shift: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Samples [N, D] for conditions cond [N, C]: x0 = temperature * N(0, I), integrated to t = 1.
    With guidance != 1 the velocity is v(null) + guidance * (v(cond) - v(null)), null_cond [C] (or
    [N, C]) the unconditional condition; guidance == 1 never calls the head on it."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if guidance != 1 and null_cond is None:
        raise ValueError("classifier-free guidance (guidance != 1) needs null_cond, the unconditional condition")
    shape = (cond.shape[0], head.latent_dim)
    x0 = temperature * torch.randn(shape, device=cond.device, dtype=cond.dtype, generator=generator)
    if guidance == 1:
        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return head(x, t, cond)
    else:
        both = torch.cat([cond, null_cond.to(cond.dtype).expand_as(cond)])  # [2N, C]

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            conditional, unconditional = head(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
            return unconditional + guidance * (conditional - unconditional)
    return integrate(velocity, x0, steps, solver, shift)
