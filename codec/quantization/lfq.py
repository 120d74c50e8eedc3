"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023, arXiv 2310.05737).

The latent is projected (1x1) to C = `lfq_bits` scalars z; each is quantized to its sign, so
the implicit codebook is {-1, +1}^C: 2^C codes, no lookup, nothing to collapse but the
projections. A code is the binary number of its bits, bit i = [z_i > 0] worth 2^i:

    z = (0.3, -1.2, 2.0)  ->  values (+1, -1, +1)  ->  bits (1, 0, 1)  ->  code 1 + 4 = 5

Entropy penalty. The soft code distribution of a position, p(c | z) ∝ exp(-||z - c||^2), is a
product over the bits, since -||z - c||^2 = 2 z.c + const: bit i is +1 with probability
sigmoid(4 z_i). So its entropy is the sum of the bits' binary entropies, never 2^C terms. The
penalty is

    mean over positions of H(p(. | z))  -  H(mean over positions of p(. | z))

low when every position is confident and the batch spreads over the codebook. The second
entropy is exact up to EXACT_ENTROPY_BITS bits: p(c | z) = p(low half of c) p(high half of c),
so the batch average is one [2^(C/2), N] @ [N, 2^(C/2)] product (never an [N, 2^C] tensor).
Above that it is the sum of the entropies of the batch-averaged bits, an upper bound (exact when
the bits are independent over the batch) that rewards balanced bits rather than every code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .axes import flatten_axes, flatten_code_axes, unflatten_axes
from .config import QuantizerConfig
from .metrics import codebook_metrics
from .result import QuantizerOutput

EXACT_ENTROPY_BITS = 12  # up to this many bits the batch entropy is exact (a 64 x 64 table at 12)
_BIT_LOGIT_SCALE = 4.0  # p(bit = +1 | z) = sigmoid(4 z): the softmax over codes of -||z - c||^2


class LookupFreeQuantizer(nn.Module):
    """One LFQ level over [B, D, *axes] latents: codes [B, 1, *axes] into 2**config.lfq_bits codes."""

    basis: Tensor

    def __init__(self, dim: int, config: QuantizerConfig) -> None:
        super().__init__()
        self.dim = dim
        self.bits = config.lfq_bits
        self.register_buffer("basis", 2 ** torch.arange(self.bits), persistent=False)  # [C] place values
        self.project_in = nn.Conv1d(dim, self.bits, 1)
        self.project_out = nn.Conv1d(self.bits, dim, 1)
        self.commitment_weight = config.commitment_weight
        self.entropy_weight = config.entropy_weight

    @property
    def n_q(self) -> int:
        return 1

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return (self.codebook_size,)

    # --- values, bits and codes -----------------------------------------------------------------
    def quantize_values(self, z: Tensor) -> Tensor:
        """Signs [B, C, N] in {-1, +1} of z [B, C, N] (z > 0 -> +1), with straight-through gradients."""
        signs = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        return z + (signs - z).detach()

    def values_to_codes(self, values: Tensor) -> Tensor:
        """Signs [B, C, N] -> codes [B, 1, N] int64."""
        return ((values > 0).long() * self.basis[:, None]).sum(1, keepdim=True)

    def codes_to_values(self, codes: Tensor) -> Tensor:
        """Codes [B, 1, N] -> signs [B, C, N] in {-1, +1}."""
        bits = (codes // self.basis[:, None]) % 2  # [B, C, N]
        return 2.0 * bits - 1.0

    # --- the entropy penalty --------------------------------------------------------------------
    def entropy_penalty(self, z: Tensor) -> Tensor:
        """Mean per-position entropy minus batch entropy (nats) of the soft codes of z [B, C, N]."""
        with torch.autocast(z.device.type, enabled=False):  # float32 even under bf16 autocast
            logits = _BIT_LOGIT_SCALE * z.float().transpose(1, 2).reshape(-1, self.bits)  # [M, C], M = B N
            probs = torch.sigmoid(logits)
            per_position = _binary_entropy(probs, logits).sum(1).mean()
            if self.bits <= EXACT_ENTROPY_BITS:
                low = self.bits // 2  # the average of p(low bits) p(high bits): [2^low, 2^(C - low)]
                average = _code_probabilities(probs[:, :low]).t() @ _code_probabilities(probs[:, low:]) / len(probs)
                batch = -torch.xlogy(average, average).sum()
            else:
                mean_bits = probs.mean(0)  # [C]
                batch = _binary_entropy(mean_bits, torch.logit(mean_bits, eps=1e-6)).sum()
        return per_position - batch

    # --- quantizer interface ----------------------------------------------------------------------
    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize x [B, D, *axes]: commitment = mse(z, sign(z)), codebook loss = the entropy penalty."""
        self._check_n_q(n_q)
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        z = self.project_in(x)  # [B, C, N]
        values = self.quantize_values(z)
        codes = self.values_to_codes(values.detach())  # [B, 1, N]
        usage, perplexity = codebook_metrics(codes, self.codebook_size)
        commitment = F.mse_loss(z, values.detach()) * self.commitment_weight
        entropy = self.entropy_penalty(z).to(x.dtype) * self.entropy_weight
        quantized = self.project_out(values)  # [B, D, N]
        return QuantizerOutput(unflatten_axes(quantized, axes), unflatten_axes(codes, axes), commitment, entropy,
                               usage, perplexity)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """x [B, D, *axes] -> codes [B, 1, *axes]."""
        self._check_n_q(n_q)
        x, axes = flatten_axes(x, self.dim)  # [B, D, N]
        return unflatten_axes(self.values_to_codes(self.project_in(x)), axes)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, 1, *axes] -> [B, D, *axes]."""
        codes, axes = flatten_code_axes(codes, leading=2)  # [B, 1, N]
        self._check_n_q(codes.shape[1])
        values = self.codes_to_values(codes).to(self.project_out.weight.dtype)  # [B, C, N]
        return unflatten_axes(self.project_out(values), axes)

    def _check_n_q(self, n_q: int | None) -> None:
        if n_q not in (None, 1):
            raise ValueError(f"LFQ has a single level: n_q must be None or 1, got {n_q}")


def _binary_entropy(probs: Tensor, logits: Tensor) -> Tensor:
    """Entropy (nats) of Bernoulli(probs), computed stably from their logits: same shape."""
    return probs * F.softplus(-logits) + (1 - probs) * F.softplus(logits)


def _code_probabilities(probs: Tensor) -> Tensor:
    """Per-bit probabilities [M, c] of +1 -> probabilities [M, 2^c] of each code (bit i worth 2^i)."""
    table = probs.new_ones(len(probs), 1)
    for bit in probs.unbind(1):  # appending bit i: codes j (bit 0) then j + 2^i (bit 1)
        table = torch.cat([table * (1 - bit[:, None]), table * bit[:, None]], dim=1)
    return table
