"""Codebook patterns: every code placed exactly once, and put back where it came from."""

from __future__ import annotations

import pytest
import torch

from slm.patterns import EMPTY, Pattern

NAMES = ["parallel", "delay", "flatten", "coarse_first"]


@pytest.mark.parametrize("name", NAMES)
def test_revert_undoes_build_for_random_shapes(name):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        q = int(torch.randint(1, 6, (1,), generator=generator))
        t = int(torch.randint(1, 40, (1,), generator=generator))
        codes = torch.randint(0, 50, (3, q, t), generator=generator)
        pattern = Pattern(name, q)
        steps, valid = pattern.build(codes, empty_token=50)
        assert steps.shape == (3, q, pattern.num_steps(t)) and valid.shape == steps.shape[1:]
        assert int(valid.sum()) == q * t  # every code exactly once
        assert bool((steps[:, ~valid] == 50).all()) and bool((steps[:, valid] < 50).all())
        assert torch.equal(pattern.revert(steps, t), codes)
        logits = torch.randn(3, q, pattern.num_steps(t), 7, generator=generator)  # values with trailing dims
        reverted = pattern.revert(logits, t)
        layout = pattern.layout(t)
        level, step = torch.nonzero(layout != EMPTY, as_tuple=True)
        assert torch.equal(reverted[:, level, layout[level, step]], logits[:, level, step])


def test_step_counts():
    t = 1500  # 30 s at 50 Hz
    assert [Pattern(name, 4).num_steps(t) for name in NAMES] == [1500, 1503, 6000, 3000]
    assert Pattern("delay", 4, delays=(0, 1, 1, 1)).num_steps(t) == 1501  # Moshi: acoustic levels one frame late


def test_delay_ends():
    """The first and last steps of a delayed sequence are mostly the empty token (a known trap)."""
    codes = torch.arange(12).view(1, 3, 4) + 100
    steps, valid = Pattern("delay", 3).build(codes, empty_token=-5)
    assert steps[0].tolist() == [[100, 101, 102, 103, -5, -5],
                                 [-5, 104, 105, 106, 107, -5],
                                 [-5, -5, 108, 109, 110, 111]]
    assert valid[:, 0].tolist() == [True, False, False] and valid[:, -1].tolist() == [False, False, True]


def test_layouts_of_flatten_and_coarse_first():
    codes = torch.arange(6).view(1, 2, 3)
    flat, _ = Pattern("flatten", 2).build(codes, empty_token=9)
    assert flat[0].tolist() == [[0, 9, 1, 9, 2, 9], [9, 3, 9, 4, 9, 5]]
    coarse, _ = Pattern("coarse_first", 2).build(codes, empty_token=9)
    assert coarse[0].tolist() == [[0, 1, 2, 9, 9, 9], [9, 9, 9, 3, 4, 5]]
    parallel, valid = Pattern("parallel", 2).build(codes, empty_token=9)
    assert torch.equal(parallel, codes) and bool(valid.all())


@pytest.mark.parametrize("name", NAMES)
def test_levels_come_after_coarser_levels_of_the_same_frame(name):
    """A level is never placed before a coarser level of its frame (so it can be conditioned on it)."""
    step = Pattern(name, 4).step_of_frame(10)  # [Q, T]
    assert bool((step[1:] >= step[:-1]).all())
    assert bool((step[:, 1:] > step[:, :-1]).all())  # frames in order within a level


def test_bad_patterns_and_shapes():
    with pytest.raises(ValueError, match="unknown pattern"):
        Pattern("zigzag", 4)
    with pytest.raises(ValueError, match="delays"):
        Pattern("delay", 3, delays=(1, 2, 3))
    with pytest.raises(ValueError, match="delay pattern only"):
        Pattern("flatten", 2, delays=(0, 1))
    with pytest.raises(ValueError, match="2 levels, the codes 3"):
        Pattern("delay", 2).build(torch.zeros(1, 3, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="expected"):
        Pattern("delay", 2).revert(torch.zeros(1, 2, 5), 5)
