"""Combining several losses on the decoder output: EnCodec's gradient balancer, or a plain weighted sum.

The balancer makes each loss's share of the gradient on the decoder output independent of the
loss's scale: loss i contributes (w_i / sum w) * total_norm / ema(||dL_i/dy||) * dL_i/dy.
Losses that do not flow through the decoder output (e.g. the quantizer's commitment loss) are
back-propagated together with the balanced gradient (see `Balancer.gradient`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, autograd

from ..distributed import all_reduce_sum_, is_distributed


def _check_names(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> None:
    unknown = sorted(set(losses) - set(weights))
    if unknown:
        raise ValueError(f"losses without a weight: {unknown}; known: {sorted(weights)}")
    if not losses:
        raise ValueError("no losses given")


def weighted_sum(losses: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Plain alternative to the balancer: sum_i w_i * L_i over the given scalar losses -> scalar."""
    _check_names(losses, weights)
    terms = [weights[name] * loss for name, loss in losses.items()]
    return torch.stack(terms).sum()


class Balancer:
    """EnCodec-style gradient balancer over losses computed from one output tensor.

    weights:        relative weight of each loss; normalised over the losses given to each call.
    total_norm:     gradient norm the balanced sum aims for (per batch item when per_batch_item).
    ema_decay:      decay of the bias-corrected EMA of each gradient norm (0: current norm only).
    per_batch_item: norm of each item's gradient, averaged over the batch (EnCodec's default),
                    instead of the norm of the whole gradient.
    epsilon:        added to the EMA norm before dividing by it.
    Under torch.distributed, norms are averaged across ranks (weighted by batch size) before the EMA,
    so every rank applies the same scales.
    """

    def __init__(
        self,
        weights: dict[str, float],
        total_norm: float = 1.0,
        ema_decay: float = 0.999,
        per_batch_item: bool = True,
        epsilon: float = 1e-12,
    ) -> None:
        if not weights or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be a non-empty dict of non-negative floats, got {weights}")
        if not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1], got {ema_decay}")
        self.weights = dict(weights)
        self.total_norm = total_norm
        self.ema_decay = ema_decay
        self.per_batch_item = per_batch_item
        self.epsilon = epsilon
        self._sums: dict[str, float] = {}  # decayed sum of norms
        self._counts: dict[str, float] = {}  # decayed number of updates (bias correction)

    def ema_norms(self) -> dict[str, float]:
        """Current bias-corrected EMA of each loss's gradient norm."""
        return {name: self._sums[name] / self._counts[name] for name in self._sums}

    def _grad_norm(self, grad: Tensor) -> Tensor:
        if self.per_batch_item:
            return grad.flatten(1).norm(dim=1).mean()
        return grad.norm()

    def _sync(self, norms: Tensor, count: int) -> Tensor:
        """Average norms [L] over ranks, weighting each rank by its number of items."""
        if not is_distributed():
            return norms
        packed = all_reduce_sum_(torch.cat([norms * count, norms.new_tensor([float(count)])]))
        return packed[:-1] / packed[-1]

    def _update_ema(self, norms: dict[str, float]) -> dict[str, float]:
        for name, norm in norms.items():
            self._sums[name] = self._sums.get(name, 0.0) * self.ema_decay + norm
            self._counts[name] = self._counts.get(name, 0.0) * self.ema_decay + 1.0
        return {name: self._sums[name] / self._counts[name] for name in norms}

    def gradient(self, losses: dict[str, Tensor], output: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The balanced gradient w.r.t. ``output`` [B, ...] of the scalar ``losses``, and metrics.

        Metrics: ``grad_norm/<name>`` (the loss's gradient norm w.r.t. output this step, averaged
        over ranks) and ``grad_share/<name>`` (its share of the summed EMA norms). Back-propagate
        the result together with any other loss in one call:
        ``torch.autograd.backward([output, other_loss], [grad, None])``.
        """
        _check_names(losses, self.weights)
        total_weight = sum(self.weights[name] for name in losses)
        if total_weight <= 0:
            raise ValueError(f"the weights of {sorted(losses)} sum to zero")
        grads: dict[str, Tensor] = {}
        for name, loss in losses.items():
            (grad,) = autograd.grad(loss, [output], retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(f"loss {name!r} does not depend on the output")
            grads[name] = grad
        norms = torch.stack([self._grad_norm(g) for g in grads.values()]).detach()
        count = output.shape[0] if self.per_batch_item else 1
        norms = self._sync(norms, count)
        current = dict(zip(grads, norms.tolist()))
        ema = self._update_ema(current)

        summed = torch.zeros_like(output)
        for name, grad in grads.items():
            scale = (self.weights[name] / total_weight) * self.total_norm / (self.epsilon + ema[name])
            summed.add_(grad, alpha=scale)

        ema_total = sum(ema.values()) + self.epsilon
        metrics = {f"grad_norm/{name}": value for name, value in current.items()}
        metrics.update({f"grad_share/{name}": value / ema_total for name, value in ema.items()})
        return summed, metrics

    def backward(self, losses: dict[str, Tensor], output: Tensor) -> dict[str, float]:
        """Back-propagate the balanced sum of ``losses`` through ``output``; returns the metrics."""
        grad, metrics = self.gradient(losses, output)
        output.backward(grad)
        return metrics

    def state_dict(self) -> dict[str, dict[str, float]]:
        """EMA state (plain floats, safe for `torch.load(weights_only=True)` and JSON)."""
        return {"sums": dict(self._sums), "counts": dict(self._counts)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        """Restore the EMA state saved by `state_dict`."""
        sums, counts = dict(state["sums"]), dict(state["counts"])
        if set(sums) != set(counts):
            raise ValueError("balancer state: 'sums' and 'counts' must have the same keys")
        self._sums = {k: float(v) for k, v in sums.items()}
        self._counts = {k: float(v) for k, v in counts.items()}
