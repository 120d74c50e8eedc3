"""Lookup-free quantization: sign codes, binary numbering, the entropy penalty, gradients, sizes."""

from __future__ import annotations

import math

import pytest
import torch

from codec.quantization import LookupFreeQuantizer, QuantizerConfig, build_quantizer
from codec.quantization.lfq import EXACT_ENTROPY_BITS


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def identity_lfq(bits: int, **overrides) -> LookupFreeQuantizer:
    """An LFQ whose projections are the identity (dim = bits), so z = x and quantized = signs."""
    lfq = LookupFreeQuantizer(bits, QuantizerConfig(kind="lfq", lfq_bits=bits, **overrides))
    with torch.no_grad():
        for conv in (lfq.project_in, lfq.project_out):
            conv.weight.copy_(torch.eye(bits)[:, :, None])
            conv.bias.zero_()
    return lfq


def brute_force_penalty(z: torch.Tensor) -> torch.Tensor:
    """Mean entropy minus batch entropy of softmax_c(-||z - c||^2) over all 2^C codes, z [B, C, N]."""
    bits = z.shape[1]
    codes = torch.arange(2**bits)
    values = 2.0 * ((codes[:, None] >> torch.arange(bits)) & 1) - 1  # [2^C, C], bit i worth 2^i
    flat = z.double().transpose(1, 2).reshape(-1, bits)  # [M, C]
    probs = torch.softmax(-(flat[:, None] - values[None]).pow(2).sum(-1), dim=-1)  # [M, 2^C]
    average = probs.mean(0)
    return -torch.xlogy(probs, probs).sum(1).mean() + torch.xlogy(average, average).sum()


def test_codes_are_the_binary_numbers_of_the_signs() -> None:
    lfq = identity_lfq(3).eval()
    x = torch.tensor([[[0.3, -0.1, 0.0], [-1.2, 0.5, -2.0], [2.0, 3.0, 1.0]]])  # [B=1, C=3, N=3]
    out = lfq(x)
    # signs (+, -, +) -> bits 1, 0, 1 -> 5; (-, +, +) -> 2 + 4 = 6; (0 -> -, -, +) -> 4
    assert out.codes.tolist() == [[[5, 6, 4]]]
    expected = torch.tensor([[[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]]])
    assert torch.equal(lfq.decode(out.codes), expected)
    torch.testing.assert_close(out.quantized, expected, atol=1e-6, rtol=0)  # z + (sign - z) up to rounding
    assert torch.equal(lfq.encode(x), out.codes)


@pytest.mark.parametrize("bits", [1, 5, 10])
def test_code_to_bits_to_code_round_trip_over_the_whole_codebook(bits: int) -> None:
    lfq = LookupFreeQuantizer(4, QuantizerConfig(kind="lfq", lfq_bits=bits))
    codes = torch.arange(2**bits).view(1, 1, -1)
    values = lfq.codes_to_values(codes)  # [1, C, 2^C]
    assert set(values.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(lfq.values_to_codes(values), codes)
    assert values[0].t().unique(dim=0).shape[0] == 2**bits  # every code its own sign pattern
    assert torch.equal(values[0, :, 6 % 2**bits] > 0, torch.tensor([(6 >> i) & 1 == 1 for i in range(bits)]))


@pytest.mark.parametrize("bits", [1, 4, 7, EXACT_ENTROPY_BITS])
def test_entropy_penalty_is_exact_up_to_the_threshold(bits: int) -> None:
    lfq = LookupFreeQuantizer(4, QuantizerConfig(kind="lfq", lfq_bits=bits))
    z = 0.7 * torch.randn(3, bits, 5)
    torch.testing.assert_close(lfq.entropy_penalty(z).double(), brute_force_penalty(z), atol=1e-4, rtol=1e-4)


def test_above_the_threshold_the_batch_entropy_is_an_upper_bound() -> None:
    bits = EXACT_ENTROPY_BITS + 2
    lfq = LookupFreeQuantizer(4, QuantizerConfig(kind="lfq", lfq_bits=bits))
    correlated = torch.randn(2, 1, 16).expand(2, bits, 16) + 0.1 * torch.randn(2, bits, 16)  # bits move together
    exact = brute_force_penalty(correlated)
    approximate = lfq.entropy_penalty(correlated).double()
    assert approximate < exact - 1.0  # marginal bit entropies overstate the batch entropy of correlated bits
    independent = 3 * torch.randn(1, bits, 64)
    assert lfq.entropy_penalty(independent) < 0  # a confident, spread batch is still rewarded


def test_entropy_penalty_rewards_a_uniform_spread_over_a_collapsed_batch() -> None:
    bits = 6
    lfq = identity_lfq(bits, entropy_weight=0.5)
    every_code = 4 * lfq.codes_to_values(torch.arange(2**bits).view(1, 1, -1))  # confident, all codes once
    one_code = every_code[..., 11:12].expand_as(every_code)  # confident, all the same code
    spread, collapsed = lfq(every_code), lfq(one_code)
    # per-position entropies ~0; batch entropy C ln 2 for the spread, ~0 for the collapsed batch
    torch.testing.assert_close(spread.codebook_loss, torch.tensor(-0.5 * bits * math.log(2)), atol=1e-3, rtol=0)
    torch.testing.assert_close(collapsed.codebook_loss, torch.tensor(0.0), atol=1e-3, rtol=0)
    assert (spread.usage.item(), spread.perplexity.item()) == pytest.approx((1.0, 2**bits))
    assert (collapsed.usage.item(), collapsed.perplexity.item()) == pytest.approx((1 / 2**bits, 1.0))
    undecided = lfq(torch.zeros_like(every_code))  # every bit a coin flip: per-position entropy C ln 2 as well
    torch.testing.assert_close(undecided.codebook_loss, torch.tensor(0.0), atol=1e-5, rtol=0)


def test_commitment_is_the_weighted_distance_to_the_signs() -> None:
    lfq = identity_lfq(4, commitment_weight=0.25)
    x = torch.randn(2, 4, 7)
    expected = 0.25 * (x - torch.where(x > 0, 1.0, -1.0)).pow(2).mean()
    torch.testing.assert_close(lfq(x).commitment_loss, expected)


def test_gradients_flow_straight_through_and_from_the_entropy_penalty() -> None:
    lfq = identity_lfq(5)
    x = torch.randn(2, 5, 6, requires_grad=True)
    upstream = torch.randn(2, 5, 6)
    out = lfq(x)
    out.quantized.backward(upstream, retain_graph=True)
    torch.testing.assert_close(x.grad, upstream)  # identity projections: the sign passes the gradient through
    x.grad = None
    out.codebook_loss.backward(retain_graph=True)
    assert x.grad.abs().sum() > 0
    learned = build_quantizer(8, QuantizerConfig(kind="lfq", lfq_bits=5))
    learned(torch.randn(2, 8, 6)).quantized.sum().backward()
    assert learned.project_in.weight.grad.abs().sum() > 0 and learned.project_out.weight.grad.abs().sum() > 0


def test_config_sizes_and_single_level() -> None:
    config = QuantizerConfig(kind="lfq", lfq_bits=12)
    lfq = build_quantizer(16, config)
    assert isinstance(lfq, LookupFreeQuantizer)
    assert config.codebook_sizes == lfq.codebook_sizes == (4096,) and lfq.n_q == 1 and not config.residual
    assert QuantizerConfig().lfq_bits == 10 and QuantizerConfig().entropy_weight == 0.1
    for bad, message in [({"lfq_bits": 0}, "lfq_bits must be in 1..20, got 0"),
                         ({"lfq_bits": 21}, "lfq_bits must be in 1..20, got 21"),
                         ({"entropy_weight": -0.1}, "entropy_weight must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            QuantizerConfig(kind="lfq", **bad)
    with pytest.raises(ValueError, match="LFQ has a single level: n_q must be None or 1, got 2"):
        lfq.encode(torch.randn(1, 16, 3), n_q=2)
    with pytest.raises(ValueError, match="n_q must be None or 1"):
        lfq.decode(torch.zeros(1, 2, 3, dtype=torch.long))


def test_twenty_bits_quantize_without_a_codebook_table() -> None:
    lfq = build_quantizer(8, QuantizerConfig(kind="lfq", lfq_bits=20))
    x = torch.randn(2, 8, 4, 4)
    out = lfq(x)
    assert out.codes.shape == (2, 1, 4, 4) and int(out.codes.max()) < 2**20
    assert torch.isfinite(out.codebook_loss)
    torch.testing.assert_close(lfq.decode(out.codes), out.quantized.detach(), atol=1e-5, rtol=0)
