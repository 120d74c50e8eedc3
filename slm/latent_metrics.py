"""Distances between two sets of latent frames (e.g. generated vs. real), for evaluation:
the energy distance (a metric between distributions, no Gaussian assumption) and the Frechet
distance between Gaussians fitted to each set (FID's formula). Both compute in float64."""

from __future__ import annotations

import torch
from torch import Tensor


def _check(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two sets of rows [N, D], [M, D] -> float64 copies; ValueError unless each has >= 2 rows of one D."""
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"need two sets of frames [N, D] and [M, D], got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two sets have different dimensions ({a.shape[1]} and {b.shape[1]})")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"each set needs at least 2 frames, got {a.shape[0]} and {b.shape[0]}")
    return a.detach().double(), b.detach().double()


def _subsample(x: Tensor, max_points: int, seed: int) -> Tensor:
    """At most max_points rows of x, drawn without replacement with a fixed seed."""
    if x.shape[0] <= max_points:
        return x
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
    return x[order.to(x.device)]


def _within(x: Tensor) -> Tensor:
    """Mean distance |x - x'| over the ordered pairs of distinct rows of x [N, D]."""
    d = torch.cdist(x, x)
    n = x.shape[0]
    return (d.sum() - d.diagonal().sum()) / (n * (n - 1))


def energy_distance(a: Tensor, b: Tensor, max_points: int = 2000, seed: int = 0) -> float:
    """2 E|a - b| - E|a - a'| - E|b - b'| (Euclidean) for a [N, D], b [M, D]; the within-set means
    exclude the pairs of a row with itself, so the estimate is unbiased and may be slightly negative
    for samples of one distribution. Sets over max_points rows are subsampled (fixed seed) first."""
    a, b = _check(a, b)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    a, b = _subsample(a, max_points, seed), _subsample(b, max_points, seed)
    return float(2 * torch.cdist(a, b).mean() - _within(a) - _within(b))


def _sqrtm_psd(s: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix [D, D] (negative eigenvalues clipped)."""
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to a [N, D] and b [M, D]
    (unbiased covariances). tr (S_a S_b)^(1/2) = tr (sqrt(S_a) S_b sqrt(S_a))^(1/2), a symmetric PSD
    matrix whose eigenvalues are stable; the result is clipped at 0 (rounding)."""
    a, b = _check(a, b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    root = _sqrtm_psd(s_a)
    middle = root @ s_b @ root
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return max(float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross), 0.0)
