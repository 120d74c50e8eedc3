"""Vector quantization with an EMA-learned euclidean codebook (EnCodec / SoundStream style).

The codebook is not trained by gradients. On the first training batch it is initialised by
k-means; afterwards, in training mode only, each batch moves it by an exponential moving
average of the vectors assigned to each code, and codes that fall out of use are restarted
on random vectors of the batch. Evaluation mode never changes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import all_gather_cat, all_reduce_sum_
from .axes import flatten_axes, flatten_code_axes, unflatten_axes
from .config import QuantizerConfig
from .kmeans import kmeans, squared_distances
from .level import LevelOutput, mse_per_item

_LAPLACE_EPS = 1e-5


class EMACodebook(nn.Module):
    """K code vectors in R^d with EMA statistics.

    Buffers: embedding [K, d], cluster_size [K] (EMA of per-code counts), embedding_sum [K, d]
    (EMA of per-code sums), initialized (bool scalar: k-means has run).
    """

    embedding: Tensor
    cluster_size: Tensor
    embedding_sum: Tensor
    initialized: Tensor

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.decay = config.ema_decay
        self.kmeans_iters = config.kmeans_iters
        self.dead_code_threshold = config.dead_code_threshold
        embedding = torch.randn(config.codebook_size, dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.zeros(config.codebook_size))
        self.register_buffer("embedding_sum", embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def size(self) -> int:
        return self.embedding.shape[0]

    def nearest(self, x: Tensor) -> Tensor:
        """Index of the nearest code (squared euclidean distance): x [N, d] -> [N] int64."""
        # min's indices are argmin's (the first of equal minima), faster on CPU
        return squared_distances(x, self.embedding).min(1).indices

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors: codes [...] -> [..., d]."""
        return F.embedding(codes, self.embedding)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Codes [N] and their vectors [N, d] for x [N, d].

        In training mode the codebook then learns from x (k-means on the first batch, dead-code
        restarts, EMA update); the returned vectors are those of the codebook before the update.
        """
        if not self.training:
            codes = self.nearest(x)
            return codes, self.lookup(codes)
        x = x.detach().to(self.embedding.dtype)
        with torch.no_grad():
            x_all = all_gather_cat(x)  # every rank learns from the whole data-parallel batch
            if not self.initialized:
                self.initialize(x_all)
            self.restart_dead_codes(x_all)
            codes = self.nearest(x)
            vectors = self.lookup(codes)
            self.update_statistics(x, codes)
        return codes, vectors

    def initialize(self, x: Tensor) -> None:
        """Set the codebook to k-means centers of x [N, d], the EMA statistics to its clusters."""
        centers, counts = kmeans(x, self.size, self.kmeans_iters)
        self.embedding.copy_(centers)
        self.cluster_size.copy_(counts)
        self.embedding_sum.copy_(centers * counts[:, None])
        self.initialized.fill_(True)

    def restart_dead_codes(self, x: Tensor) -> None:
        """Move codes whose EMA cluster size is below the threshold onto random rows of x [N, d]."""
        dead = self.cluster_size < self.dead_code_threshold  # [K]
        samples = x[torch.randint(len(x), (self.size,), device=x.device)]  # [K, d]
        self.embedding.copy_(torch.where(dead[:, None], samples, self.embedding))
        restarted_size = torch.full_like(self.cluster_size, self.dead_code_threshold)
        self.cluster_size.copy_(torch.where(dead, restarted_size, self.cluster_size))
        restarted_sum = samples * self.dead_code_threshold
        self.embedding_sum.copy_(torch.where(dead[:, None], restarted_sum, self.embedding_sum))

    def update_statistics(self, x: Tensor, codes: Tensor) -> None:
        """EMA update from x [N, d] assigned to codes [N], then embedding = sum / smoothed size.

        Under data parallelism the batch counts and sums are summed over ranks.
        """
        counts = all_reduce_sum_(torch.bincount(codes, minlength=self.size).to(x.dtype))  # [K]
        sums = all_reduce_sum_(torch.zeros_like(self.embedding).index_add_(0, codes, x))  # [K, d]
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embedding_sum.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + _LAPLACE_EPS) / (total + self.size * _LAPLACE_EPS) * total
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])


class VectorQuantizer(nn.Module):
    """One VQ level over [B, D, *axes] latents with an EMA codebook and a straight-through estimator.

    codebook_dim: the code space; None (the default, used by the RVQ) means D, without the
    linear projections in and out that a smaller code space adds.
    """

    def __init__(self, dim: int, config: QuantizerConfig, codebook_dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        codebook_dim = codebook_dim or dim
        projected = codebook_dim != dim
        self.project_in = nn.Linear(dim, codebook_dim) if projected else nn.Identity()
        self.project_out = nn.Linear(codebook_dim, dim) if projected else nn.Identity()
        self.codebook = EMACodebook(codebook_dim, config)
        self.commitment_weight = config.commitment_weight

    @property
    def codebook_size(self) -> int:
        return self.codebook.size

    def encode(self, x: Tensor) -> Tensor:
        """x [B, D, *axes] -> codes [B, *axes]; never changes the codebook."""
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        z = self.project_in(x.transpose(1, 2))  # [B, N, d]
        codes = self.codebook.nearest(z.flatten(0, 1)).view(z.shape[:2])  # [B, N]
        return unflatten_axes(codes, axes)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, *axes] -> [B, D, *axes]."""
        codes, axes = flatten_code_axes(codes, leading=1)  # [B, N]
        return unflatten_axes(self.project_out(self.codebook.lookup(codes)).transpose(1, 2), axes)

    def forward(self, x: Tensor) -> LevelOutput:
        """Quantize x [B, D, *axes]; the commitment loss is mse(z, code vector) in code space."""
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        z = self.project_in(x.transpose(1, 2))  # [B, N, d]
        codes, vectors = self.codebook(z.flatten(0, 1))
        codes, vectors = codes.view(z.shape[:2]), vectors.view(z.shape)  # [B, N], [B, N, d]
        commitment = mse_per_item(z, vectors) * self.commitment_weight  # vectors carry no gradient
        z_q = z + (vectors - z).detach()  # straight-through
        quantized = self.project_out(z_q).transpose(1, 2)  # [B, D, N]
        return LevelOutput(unflatten_axes(quantized, axes), unflatten_axes(codes, axes), commitment,
                           torch.zeros_like(commitment))
