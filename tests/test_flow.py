"""The flow-matching head: ODE solvers reach analytic endpoints at their order, the loss and
sampler are consistent (a tiny head learns a 2-D Gaussian mixture), guidance and temperature
behave, and the latent distances match closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slm.flow import (FlowHead, FlowHeadConfig, flow_matching_loss, flow_times, integrate, interpolate, sample_head,
                      sample_time)
from slm.latent_metrics import energy_distance, frechet_distance

torch.set_num_threads(1)


def _field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = 2 t x: x(1) = x(0) e (not linear in t, so Euler is inexact)."""
    assert t.shape == (x.shape[0],) and 0 <= float(t.min()) <= float(t.max()) <= 1
    return 2 * t[:, None] * x


def _errors(solver: str, shift: float, steps=(32, 64, 128)) -> list[float]:
    """Relative errors (max over entries, over max |x(1)|) of the endpoint for each number of steps."""
    x0 = torch.tensor([[1.0, -0.5], [2.0, 0.25]], dtype=torch.float64)
    exact = x0 * math.e
    return [float((integrate(_field, x0, n, solver, shift) - exact).abs().max() / exact.abs().max()) for n in steps]


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("solver, order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_solvers_converge_at_their_order(solver, order, shift):
    errors = _errors(solver, shift)
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    if order == 1:
        assert all(0.8 < o < 1.2 for o in orders), orders
        assert errors[-1] < 0.05
    else:
        assert all(o > 1.7 for o in orders), orders
        assert errors[-1] < 5e-4
    assert errors[0] > 1e-6  # the field is one the solvers cannot integrate exactly


@pytest.mark.parametrize("solver, calls", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_solver_velocity_calls_and_validation(solver, calls):
    count = 0

    def velocity(x, t):
        nonlocal count
        count += 1
        return torch.zeros_like(x)

    x0 = torch.randn(3, 2)
    assert torch.equal(integrate(velocity, x0, 7, solver), x0)
    assert count == 7 * calls
    with pytest.raises(ValueError):
        integrate(velocity, x0, 0, solver)
    with pytest.raises(ValueError):
        integrate(velocity, x0, 4, "rk4")  # type: ignore[arg-type]


def test_flow_times():
    torch.testing.assert_close(flow_times(8), torch.linspace(0, 1, 9))
    for shift in (0.5, 1.0, 3.0):
        t = flow_times(10, shift)
        assert t.shape == (11,) and float(t[0]) == 0 and float(t[-1]) == 1
        assert bool((t.diff() > 0).all())
    uniform, shifted = flow_times(10), flow_times(10, 3.0)
    assert bool((shifted[1:-1] < uniform[1:-1]).all())  # every inner point moves towards the noise end
    assert float(shifted[1] - shifted[0]) < float(shifted[-1] - shifted[-2])  # small steps near t = 0
    assert float(shifted[5]) == pytest.approx(0.5 / (0.5 + 3 * 0.5))
    with pytest.raises(ValueError):
        flow_times(0)
    with pytest.raises(ValueError):
        flow_times(4, shift=0.0)


def test_interpolate_and_time_sampling():
    x, noise = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(interpolate(x, noise, torch.ones(5)), x)
    assert torch.equal(interpolate(x, noise, torch.zeros(5)), noise)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0, 0.75])
    torch.testing.assert_close(interpolate(x, noise, t), t[:, None] * x + (1 - t[:, None]) * noise)
    g = torch.Generator().manual_seed(0)
    for config in (FlowHeadConfig(time_sampling="uniform"), FlowHeadConfig(logit_mean=-1.0, logit_std=0.5)):
        t = sample_time(20000, config, "cpu", g)
        assert t.shape == (20000,) and float(t.min()) > 0 and float(t.max()) < 1
        if config.time_sampling == "uniform":
            assert float(t.mean()) == pytest.approx(0.5, abs=0.01)
        else:
            logits = torch.logit(t)
            assert float(logits.mean()) == pytest.approx(-1.0, abs=0.02)
            assert float(logits.std()) == pytest.approx(0.5, abs=0.02)


def test_config_validation():
    for bad in (dict(dim=0), dict(blocks=0), dict(noise_draws=0), dict(logit_std=0.0), dict(time_sampling="x")):
        with pytest.raises(ValueError):
            FlowHeadConfig(**bad)


def test_zero_initialised_head_and_loss_at_init():
    torch.manual_seed(0)
    config = FlowHeadConfig(dim=32, blocks=2, noise_draws=4)
    head = FlowHead(4, 6, config)
    x, cond = 2 * torch.randn(4096, 4) + 1, torch.randn(4096, 6)
    assert torch.equal(head(x, torch.rand(4096), cond), torch.zeros(4096, 4))
    # v = 0: the loss is E|x - noise|^2 = E x^2 + 1 per feature (here 4 + 1 + 1 = 6)
    expected = float(x.square().mean()) + 1
    loss = flow_matching_loss(head, x, cond, config, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(expected, rel=0.02)
    loss.backward()
    assert float(head.out.weight.grad.abs().sum()) > 0 and float(head.out.bias.grad.abs().sum()) > 0
    empty = flow_matching_loss(head, x[:0], cond[:0], config)  # no scored positions
    assert empty.item() == 0 and empty.requires_grad


def _perturbed_head() -> FlowHead:
    """A head whose output is not 0 (its zero-initialised layers drawn at random)."""
    torch.manual_seed(0)
    head = FlowHead(3, 5, FlowHeadConfig(dim=16, blocks=2))
    for p in head.parameters():
        if not p.abs().sum():
            torch.nn.init.normal_(p, std=0.3)
    return head


def test_guidance():
    head = _perturbed_head()
    cond, null = torch.randn(4, 5), torch.randn(5)

    def draw(**kw):
        return sample_head(head, cond, 6, "heun", generator=torch.Generator().manual_seed(3), **kw)

    plain = draw()
    assert torch.equal(draw(guidance=1.0, null_cond=null), plain)
    with torch.no_grad():
        x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
        assert torch.equal(integrate(lambda x, t: head(x, t, cond), x0, 6, "heun"), plain)
    guided = draw(guidance=2.0, null_cond=null)
    assert not torch.allclose(guided, plain, atol=1e-3)
    # guidance 0 is the unconditional model: the null condition for every row
    torch.testing.assert_close(draw(guidance=0.0, null_cond=null), sample_head(
        head, null.expand(4, 5), 6, "heun", generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError):
        draw(guidance=2.0)


def test_temperature_zero_is_deterministic():
    head = _perturbed_head()
    cond = torch.randn(4, 5)
    a = sample_head(head, cond, 5, temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = sample_head(head, cond, 5, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and float(a.abs().sum()) > 0
    with torch.no_grad():
        torch.testing.assert_close(a, integrate(lambda x, t: head(x, t, cond), torch.zeros(4, 3), 5))
    c = sample_head(head, cond, 5, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)


MODES = 8


def _mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n points [n, 2] of 8 Gaussians (std 0.15) on a circle of radius 2, their modes [n] and centres [n, 2]."""
    mode = torch.randint(0, MODES, (n,), generator=g)
    angle = 2 * math.pi * mode / MODES
    centre = 2 * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centre + 0.15 * torch.randn(n, 2, generator=g), mode, centre


@pytest.mark.parametrize("conditional, solver", [(True, "euler"), (False, "heun")])
def test_head_learns_a_gaussian_mixture(conditional, solver):
    torch.manual_seed(0)
    config = FlowHeadConfig(dim=64, blocks=2, noise_draws=2)
    head = FlowHead(2, MODES, config)

    def condition(mode):  # the mode id (one-hot), or a constant
        return F.one_hot(mode, MODES).float() if conditional else torch.zeros(len(mode), MODES)

    g = torch.Generator().manual_seed(0)
    untrained = sample_head(head, condition(_mixture(1000, g)[1]), 20, solver, generator=g)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(200):
        x, mode, _ = _mixture(256, g)
        loss = flow_matching_loss(head, x, condition(mode), config, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, mode, centre = _mixture(1000, g)
    samples = sample_head(head, condition(mode), 20, solver, generator=g)
    data = _mixture(1000, g)[0]
    learned, before = energy_distance(samples, data), energy_distance(untrained, data)
    noise = energy_distance(torch.randn(1000, 2, generator=g), data)
    print(f"energy distance: learned {learned:.4f}, untrained {before:.4f}, noise {noise:.4f}")
    assert learned < 0.05
    assert noise > 0.15 and before > 0.15
    if conditional:  # each sample lies at its own mode (E|N(0, 0.15^2 I_2)| = 0.19; modes are 1.5 apart)
        assert float((samples - centre).norm(dim=1).mean()) < 0.35
        assert float((untrained - centre).norm(dim=1).mean()) > 1.5


def test_energy_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 4, generator=g), torch.randn(1500, 4, generator=g)
    same = energy_distance(a, b)
    shifted = energy_distance(a, b + torch.tensor([1.0, 0, 0, 0]))
    print(f"energy distance: same {same:.4f}, shifted {shifted:.4f}")
    assert abs(same) < 0.01 and shifted > 0.2
    assert energy_distance(b + 1, a) == pytest.approx(energy_distance(a, b + 1), rel=1e-9)
    # exact small case: a = {0, 0}, b = {1, 1} in 1-D: 2 * 1 - 0 - 0 (within-set means skip the diagonal)
    assert energy_distance(torch.zeros(2, 1), torch.ones(2, 1)) == pytest.approx(2.0)
    # a = {0, 1}, b = {2, 3}: 2 E|a-b| = 2 (2 + 3 + 1 + 2) / 4 = 4, E|a-a'| = E|b-b'| = 1
    assert energy_distance(torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])) == pytest.approx(2.0)
    # interleaved a = {0, 2}, b = {1, 3}: 2 * 1.5 - 2 - 2 = -1 (the unbiased estimate can be negative)
    assert energy_distance(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]])) == pytest.approx(-1.0)
    # subsampling is seeded: repeatable, and close to the full estimate
    big = torch.randn(3000, 4, generator=g) + 0.5
    sub = energy_distance(a, big, max_points=500)
    assert sub == energy_distance(a, big, max_points=500)
    assert sub == pytest.approx(energy_distance(a, big, max_points=4000), abs=0.05)


def _exact_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """n rows [n, D] whose sample mean and (unbiased) covariance are exactly mean and cov."""
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T  # white: covariance I
    return mean + z @ torch.linalg.cholesky(cov).T


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64)
    s1, s2 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64), torch.tensor([2.0, 1.0, 0.25], dtype=torch.float64)
    a, b = _exact_moments(500, mu1, torch.diag(s1), g), _exact_moments(700, mu2, torch.diag(s2), g)
    expected = float((mu1 - mu2).square().sum() + (s1.sqrt() - s2.sqrt()).square().sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a.float(), b.float()) == pytest.approx(expected, rel=1e-4)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # a rotation of both sets changes nothing
    q = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    assert frechet_distance(a @ q, b @ q) == pytest.approx(expected, rel=1e-9)
    # non-commuting covariances: tr (S1 S2)^(1/2) = sum of sqrt of the (real, positive) eigenvalues of S1 S2
    c1 = torch.tensor([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=torch.float64)
    c2 = torch.tensor([[1.0, -0.4, 0.2], [-0.4, 3.0, 0.0], [0.2, 0.0, 0.7]], dtype=torch.float64)
    a, b = _exact_moments(400, mu1, c1, g), _exact_moments(400, mu2, c2, g)
    cross = torch.linalg.eigvals(c1 @ c2).real.sqrt().sum()
    expected = float((mu1 - mu2).square().sum() + c1.trace() + c2.trace() - 2 * cross)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("metric", [energy_distance, frechet_distance])
def test_metrics_reject_bad_sets(metric):
    with pytest.raises(ValueError, match="at least 2"):
        metric(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="different dimensions"):
        metric(torch.randn(5, 3), torch.randn(5, 4))
