"""Gradient balancer: analytic gradients, EMA state, errors, and the weighted-sum alternative."""

from __future__ import annotations

import pytest
import torch

from codec.losses.balancer import Balancer, weighted_sum


def make_output(seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(2, 1, 8, generator=gen)).requires_grad_(True)


def two_losses(out: torch.Tensor, a: float = 1.0, b: float = 1000.0) -> dict[str, torch.Tensor]:
    """Gradients w.r.t. out: a * ones and b * out (1000x apart in scale)."""
    return {"lin": a * out.sum(), "quad": b * out.pow(2).sum() / 2}


def item_norm(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1).norm(dim=1).mean()


def test_balanced_gradient_is_analytic_combination():
    out = make_output()
    balancer = Balancer({"lin": 1.0, "quad": 3.0}, total_norm=2.0, ema_decay=0.0)
    metrics = balancer.backward(two_losses(out), out)

    g_lin, g_quad = torch.ones_like(out), 1000.0 * out.detach()
    expected = 2.0 * (0.25 * g_lin / item_norm(g_lin) + 0.75 * g_quad / item_norm(g_quad))
    torch.testing.assert_close(out.grad, expected)
    # Each loss contributes in proportion to its weight, whatever its raw scale.
    lin_part = 2.0 * 0.25 * g_lin / item_norm(g_lin)
    quad_part = out.grad - lin_part
    assert float(item_norm(quad_part) / item_norm(lin_part)) == pytest.approx(3.0, rel=1e-5)

    assert metrics["grad_norm/lin"] == pytest.approx(8**0.5)
    assert metrics["grad_norm/quad"] == pytest.approx(float(item_norm(g_quad)), rel=1e-6)
    assert metrics["grad_share/lin"] + metrics["grad_share/quad"] == pytest.approx(1.0)
    assert metrics["grad_share/quad"] > 0.99


def test_whole_tensor_norm_and_parameter_gradients():
    weight = torch.tensor(2.0, requires_grad=True)
    x = torch.randn(2, 1, 8, generator=torch.Generator().manual_seed(1))
    out = weight * x  # the decoder output is not a leaf: gradients flow on to the parameters
    balancer = Balancer({"lin": 1.0, "quad": 1.0}, ema_decay=0.0, per_batch_item=False)
    balancer.backward(two_losses(out), out)
    g_lin, g_quad = torch.ones_like(x), 1000.0 * out.detach()
    out_grad = 0.5 * g_lin / g_lin.norm() + 0.5 * g_quad / g_quad.norm()
    torch.testing.assert_close(weight.grad, (out_grad * x).sum())


def test_ema_is_bias_corrected_and_round_trips():
    balancer = Balancer({"lin": 1.0, "quad": 1.0}, ema_decay=0.5)
    norms = []
    for step in range(2):
        out = make_output(seed=step, scale=1.0 + step)
        balancer.backward(two_losses(out), out)
        norms.append(float(item_norm(1000.0 * out.detach())))
    ema = balancer.ema_norms()
    assert ema["quad"] == pytest.approx((0.5 * norms[0] + norms[1]) / 1.5, rel=1e-6)
    assert ema["lin"] == pytest.approx(8**0.5)

    restored = Balancer({"lin": 1.0, "quad": 1.0}, ema_decay=0.5)
    restored.load_state_dict(balancer.state_dict())
    assert restored.ema_norms() == ema
    out_a, out_b = make_output(seed=5), make_output(seed=5)
    balancer.backward(two_losses(out_a), out_a)
    restored.backward(two_losses(out_b), out_b)
    torch.testing.assert_close(out_a.grad, out_b.grad)


def test_state_dict_survives_safe_torch_save(tmp_path):
    balancer = Balancer({"lin": 1.0, "quad": 2.0})
    out = make_output()
    balancer.backward(two_losses(out), out)
    torch.save(balancer.state_dict(), tmp_path / "balancer.pt")
    restored = Balancer({"lin": 1.0, "quad": 2.0})
    restored.load_state_dict(torch.load(tmp_path / "balancer.pt", weights_only=True))
    assert restored.state_dict() == balancer.state_dict()


def test_errors():
    balancer = Balancer({"lin": 1.0})
    out = make_output()
    with pytest.raises(ValueError, match="quad"):
        balancer.backward(two_losses(out), out)
    with pytest.raises(ValueError, match="does not depend"):
        balancer.backward({"lin": torch.ones((), requires_grad=True).sum()}, out)
    with pytest.raises(ValueError):
        Balancer({"lin": -1.0})
    with pytest.raises(ValueError):
        weighted_sum({"other": torch.tensor(1.0)}, {"lin": 1.0})


def test_weighted_sum_value_and_gradient():
    out = make_output()
    losses = two_losses(out, a=1.0, b=2.0)
    total = weighted_sum(losses, {"lin": 0.5, "quad": 4.0, "unused": 7.0})
    expected = 0.5 * out.detach().sum() + 4.0 * out.detach().pow(2).sum()
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-6)
    total.backward()
    torch.testing.assert_close(out.grad, 0.5 + 8.0 * out.detach())


RANK_SCRIPT = """
import sys, torch, torch.distributed as dist
from codec.losses.balancer import Balancer
rank, rendezvous, result = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + rendezvous, rank=rank, world_size=2)
out = (torch.randn(rank + 1, 1, 8, generator=torch.Generator().manual_seed(rank)) * (rank + 1)).requires_grad_(True)
metrics = Balancer({"lin": 1.0, "quad": 3.0}, ema_decay=0.0).backward(
    {"lin": out.sum(), "quad": 1000.0 * out.pow(2).sum() / 2}, out)
torch.save({"out": out.detach(), "grad": out.grad, "metrics": metrics}, result)
dist.destroy_process_group()
"""


def test_distributed_ranks_share_scales(tmp_path):
    """Two gloo ranks with different batch sizes and scales apply the batch-weighted mean norm."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(r), str(tmp_path / "rdv"), str(tmp_path / f"{r}.pt")], env=env
        )
        for r in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    outs = [r["out"] for r in results]
    lin_norm = 8**0.5
    quad_norm = sum(item_norm(1000.0 * o) * len(o) for o in outs) / 3  # rank 0 has 1 item, rank 1 has 2
    for res, o in zip(results, outs):
        expected = 0.25 * torch.ones_like(o) / lin_norm + 0.75 * 1000.0 * o / quad_norm
        torch.testing.assert_close(res["grad"], expected)
        assert res["metrics"]["grad_norm/quad"] == pytest.approx(float(quad_norm), rel=1e-5)
