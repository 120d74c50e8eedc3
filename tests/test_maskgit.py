"""MaskGIT decoding: the cosine schedule, what each step reveals and keeps, level-by-level order,
confidence order, and its equivalence with greedy AR decoding when forced into raster order."""

from __future__ import annotations

import math

import pytest
import torch

from slm.image_lm import ImageTokenLM, ImageTokenLMConfig
from slm.maskgit import MASKED, mask_schedule, maskgit_decode, tokens_to_unmask
from slm.transformer import TransformerConfig
from slm.visual_generation import GenerationOptions


class Recorder:
    """A predictor with fresh random logits at every call that keeps every state it was given."""

    def __init__(self, sizes: tuple[int, ...], length: int, seed: int = 0) -> None:
        self.sizes, self.length = sizes, length
        self.generator = torch.Generator().manual_seed(seed)
        self.states: list[torch.Tensor] = []

    def __call__(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        self.states.append(tokens.clone())
        b = tokens.shape[0]
        return [3 * torch.randn(b, self.length, k, generator=self.generator) for k in self.sizes]


def test_the_schedule_is_the_cosine() -> None:
    assert mask_schedule(0.0) == 1.0 and abs(mask_schedule(1.0)) < 1e-12
    assert mask_schedule(1 / 3) == pytest.approx(math.cos(math.pi / 6))
    torch.testing.assert_close(mask_schedule(torch.tensor([0.0, 0.5])), torch.tensor([1.0, math.sqrt(0.5)]))


@pytest.mark.parametrize(("total", "steps"), [(256, 8), (16, 16), (16, 12), (50, 3), (7, 1), (1000, 20)])
def test_tokens_to_unmask_sums_to_the_total_and_reveals_at_least_one(total: int, steps: int) -> None:
    counts = tokens_to_unmask(total, steps)
    assert len(counts) == steps and sum(counts) == total and min(counts) >= 1


def test_tokens_to_unmask_follows_the_cosine_when_no_step_would_be_empty() -> None:
    counts = tokens_to_unmask(256, 8)
    still_masked = [256 - sum(counts[:s]) for s in range(1, 9)]
    assert still_masked == [math.floor(256 * math.cos(math.pi / 2 * s / 8)) for s in range(1, 9)]
    assert counts == sorted(counts)  # few tokens first, most at the end
    assert tokens_to_unmask(16, 16) == [1] * 16


def test_tokens_to_unmask_rejects_impossible_step_counts() -> None:
    with pytest.raises(ValueError, match="needs 1 to 4 steps"):
        tokens_to_unmask(4, 5)
    with pytest.raises(ValueError, match="got 0"):
        tokens_to_unmask(4, 0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_each_step_reveals_its_count_and_never_changes_a_kept_token(temperature: float) -> None:
    sizes, length, steps = (11, 5), 12, 6
    predict = Recorder(sizes, length)
    options = GenerationOptions(temperature=temperature, top_k=4)
    tokens, calls = maskgit_decode(predict, 3, length, len(sizes), steps, options, torch.Generator().manual_seed(1))
    assert calls == steps == len(predict.states)
    states = predict.states + [tokens]
    assert bool((states[0] == MASKED).all()) and not bool((tokens == MASKED).any())
    for count, before, after in zip(tokens_to_unmask(len(sizes) * length, steps), states, states[1:]):
        revealed = (before == MASKED) & (after != MASKED)
        assert revealed.flatten(1).sum(1).tolist() == [count] * 3
        kept = before != MASKED
        assert torch.equal(after[kept], before[kept])
        assert not bool(((before != MASKED) & (after == MASKED)).any())
    for level, k in enumerate(sizes):
        assert 0 <= int(tokens[:, level].min()) and int(tokens[:, level].max()) < k


def test_level_by_level_starts_a_level_only_when_the_one_below_is_complete() -> None:
    sizes, length, steps = (8, 8, 8), 10, 4
    predict = Recorder(sizes, length)
    tokens, calls = maskgit_decode(predict, 2, length, 3, steps, GenerationOptions(temperature=1.0),
                                   torch.Generator().manual_seed(2), level_by_level=True)
    assert calls == 3 * steps
    states = predict.states + [tokens]
    schedule = tokens_to_unmask(length, steps)
    for call, (before, after) in enumerate(zip(states, states[1:])):
        level, step = divmod(call, steps)
        assert not bool((before[:, :level] == MASKED).any())  # the levels below are complete
        assert bool((before[:, level + 1:] == MASKED).all())  # the levels above have not started
        revealed = (before == MASKED) & (after != MASKED)
        assert revealed[:, level].sum(1).tolist() == [schedule[step]] * 2
        assert not bool(revealed[:, level + 1:].any())


def confidence_order_predictor(order: torch.Tensor, size: int):
    """Logits whose top token is most probable at the place first in ``order`` [N]."""
    rank = order.argsort()  # place -> its turn

    def predict(tokens: torch.Tensor) -> list[torch.Tensor]:
        b, _, n = tokens.shape
        logits = torch.zeros(b, n, size)
        logits[:, :, 0] = 10.0 - rank.float()  # earlier turn: more confident
        return [logits]

    return predict


@pytest.mark.parametrize("order", ["raster", "shuffled"])
def test_one_step_per_token_visits_places_by_confidence(order: str) -> None:
    n = 9
    turns = torch.arange(n) if order == "raster" else torch.randperm(n, generator=torch.Generator().manual_seed(3))
    states = []
    predict = confidence_order_predictor(turns, 4)
    tokens, calls = maskgit_decode(lambda t: states.append(t.clone()) or predict(t), 2, n, 1, n,
                                   GenerationOptions(temperature=0))
    states.append(tokens)
    assert calls == n
    for before, after in zip(states, states[1:]):
        revealed = (before == MASKED) & (after != MASKED)  # [B, 1, N]
        assert revealed.sum().item() == 2 and torch.equal(revealed[0], revealed[1])
    visited = [int(((before[0, 0] == MASKED) & (after[0, 0] != MASKED)).nonzero().item())
               for before, after in zip(states, states[1:])]
    assert visited == turns.tolist()


def test_one_step_per_token_equals_greedy_ar_in_raster_order() -> None:
    """With one step per token and temperature 0, MaskGIT whose predictor is a causal model's
    next-place logits (all other places uniform: least confident, the levels having equal
    codebook sizes) reveals the next raster place
    at each step and reproduces greedy AR token for token.

    The statement cannot hold for the bidirectional MaskGIT network itself: it picks its order by
    confidence, not raster order, and even forced into raster order it predicts a place from a
    different conditional (trained on random masks, seeing MASK at every later place) than a causal
    model does, so only the AR-predictor version is an identity.
    """
    torch.manual_seed(0)
    config = ImageTokenLMConfig("ar", (6, 6), (3, 3), num_classes=3,
                                transformer=TransformerConfig(dim=32, layers=2, heads=2, causal=True))
    model = ImageTokenLM(config).double().eval()
    labels = torch.tensor([0, 2, 3])
    n, q = config.num_positions, config.n_q

    def next_place_logits(tokens: torch.Tensor) -> list[torch.Tensor]:
        place = int((tokens[0] == MASKED).any(0).nonzero()[0])  # the first place with a masked level
        assert bool((tokens[:, :, :place] != MASKED).all()) and bool((tokens[:, :, place + 1:] == MASKED).all())
        ar = model.logits(tokens[:, :, :place], labels)  # [B, place + 1, K_q]
        out = []
        for level in ar:
            logits = torch.zeros(len(labels), n, level.shape[-1], dtype=level.dtype)
            logits[:, place] = level[:, -1]
            out.append(logits)
        return out

    tokens, calls = maskgit_decode(next_place_logits, len(labels), n, q, q * n, GenerationOptions(temperature=0))
    greedy, _ = model.sample_codes(labels, GenerationOptions(temperature=0))
    assert calls == q * n
    assert torch.equal(tokens.view_as(greedy), greedy)
