"""A small k-means (k-means++ seeding, then Lloyd iterations) to initialise codebooks."""

from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(x: Tensor, centers: Tensor) -> Tensor:
    """Squared euclidean distances between rows of x [N, d] and centers [K, d] -> [N, K]."""
    cross = x @ centers.t()
    return (x.pow(2).sum(1, keepdim=True) - 2 * cross + centers.pow(2).sum(1)).clamp_min(0)


def kmeans_plusplus(x: Tensor, k: int) -> Tensor:
    """k seeds [k, d] drawn from x [N, d], each with probability proportional to D(x)^2."""
    centers = x.new_empty(k, x.shape[1])
    centers[:1] = x[torch.randint(len(x), (1,), device=x.device)]
    d2 = squared_distances(x, centers[:1]).squeeze(1)  # [N] distance to the nearest seed
    for i in range(1, k):
        weights = d2 + (d2.sum() == 0).to(d2.dtype)  # all points taken: draw uniformly
        centers[i : i + 1] = x[torch.multinomial(weights, 1)]
        d2 = torch.minimum(d2, squared_distances(x, centers[i : i + 1]).squeeze(1))
    return centers


def kmeans(x: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """Cluster x [N, d] into k groups: centers [k, d] and cluster sizes [k] (as x's dtype).

    An empty cluster keeps its previous center.
    """
    centers = kmeans_plusplus(x, k)
    for _ in range(iters):
        codes = squared_distances(x, centers).argmin(1)
        counts = torch.bincount(codes, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centers).index_add_(0, codes, x)
        centers = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
    counts = torch.bincount(squared_distances(x, centers).argmin(1), minlength=k).to(x.dtype)
    return centers, counts
