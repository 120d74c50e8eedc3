"""TokenLM: losses of padded batches, KV-cached generation equal to recomputation, memorisation."""

from __future__ import annotations

import pytest
import torch

from slm.model import TokenLM, TokenLMConfig
from slm.sampling import SamplingConfig, sample
from slm.transformer import TransformerConfig

SIZES = (16, 12, 8)


def _lm(pattern: str = "delay", seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    config = TokenLMConfig(SIZES, 50.0, pattern, TransformerConfig(dim=32, layers=2, heads=2, max_steps=256))
    return TokenLM(config)


def _codes(b: int, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (b, t), generator=g) for k in SIZES], 1)


def _fit(model: TokenLM, data: torch.Tensor, steps: int = 150) -> float:
    """Train on ``data`` alone (memorise it); the last loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(data).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("pattern", ["parallel", "delay", "flatten"])
@torch.no_grad()
def test_a_padded_item_scores_as_it_would_alone(pattern):
    model = _lm(pattern).eval()
    codes = _codes(2, 9)
    alone = model(codes[1:, :, :6])
    batch = model(codes, lengths=torch.tensor([9, 6]))
    both = model(codes[:1])
    assert batch.level_counts.tolist() == [15] * 3 and alone.level_counts.tolist() == [6] * 3
    expected = (alone.level_losses * 6 + both.level_losses * 9) / 15
    torch.testing.assert_close(batch.level_losses, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.logits[0][1, :6], alone.logits[0][0], atol=1e-5, rtol=0)


def test_coarse_first_refuses_padded_batches():
    with pytest.raises(ValueError, match="equal length"):
        _lm("coarse_first")(_codes(2, 9), lengths=torch.tensor([9, 6]))


@pytest.mark.parametrize("pattern", ["parallel", "delay", "flatten", "coarse_first"])
def test_cached_greedy_generation_equals_recomputation(pattern):
    model = _lm(pattern).eval()
    prompt = _codes(2, 5)
    greedy = SamplingConfig(temperature=0)
    cached = model.generate(prompt, 7, greedy)
    recomputed = model.generate(prompt, 7, greedy, use_cache=False)
    assert cached.shape == (2, 3, 12) and torch.equal(cached[:, :, :5], prompt)
    assert torch.equal(cached, recomputed)
    # the logits of teacher forcing over the result choose the same tokens (argmax)
    logits = model(cached).logits
    for level, level_logits in enumerate(logits):
        assert torch.equal(level_logits[:, 5:].argmax(-1), cached[:, level, 5:])


def test_a_tiny_model_memorises_and_continues_its_sequences():
    model = _lm("delay")
    data = _codes(3, 24, seed=7)
    assert _fit(model, data) < 0.1
    model.eval()
    continued = model.generate(data[:, :, :8], 16, SamplingConfig(temperature=0))
    assert (continued == data).float().mean() > 0.95


def test_sampling_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, SamplingConfig(top_k=2), g).tolist()) == {2, 3}
    assert set(sample(logits, SamplingConfig(top_p=0.5), g).tolist()) == {3}  # p(3) = 0.64 >= 0.5
    assert sample(logits[:3], SamplingConfig(temperature=0)).tolist() == [3, 3, 3]
    hot = sample(logits, SamplingConfig(temperature=100.0), g)
    assert len(set(hot.tolist())) == 4
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0)


def test_checkpoint_round_trip(tmp_path):
    from codec.checkpoint import load_checkpoint, read_checkpoint_info, save_pretrained

    model = _lm("flatten").eval()
    save_pretrained(model, tmp_path / "lm", {"step": "0"})
    info = read_checkpoint_info(tmp_path / "lm")
    assert info.model_type == "token_lm" and info.config == model.config
    loaded = load_checkpoint(tmp_path / "lm", model_type="token_lm")
    codes = _codes(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(codes).loss, model(codes).loss)


def test_max_frames_fit_the_context():
    assert _lm("delay").max_frames == 254 and _lm("flatten").max_frames == 85 and _lm("parallel").max_frames == 256


def test_repetition_aware_sampling_breaks_loops():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0]]).repeat(1000, 1)  # token 0 has p = 0.87
    g = torch.Generator().manual_seed(0)
    nucleus = SamplingConfig(top_p=0.8)
    looping = torch.zeros(1000, 10, dtype=torch.long)  # the last 10 tokens were all 0
    assert set(sample(logits, nucleus, g, looping).tolist()) == {0}  # RAS off: stuck
    ras = SamplingConfig(top_p=0.8, repetition_window=10, repetition_threshold=0.5)
    drawn = sample(logits, ras, g, looping)
    assert 0.08 < float((drawn != 0).float().mean()) < 0.2  # redrawn from the full distribution (p != 0: 0.13)
    fresh = torch.ones(1000, 10, dtype=torch.long)
    assert set(sample(logits, ras, g, fresh).tolist()) == {0}  # no repetition: nucleus as usual


def _depth_lm() -> TokenLM:
    torch.manual_seed(0)
    small = TransformerConfig(dim=32, layers=1, heads=2, max_steps=256)
    return TokenLM(TokenLMConfig(SIZES, 50.0, "parallel", small, depth=TransformerConfig(dim=16, layers=1, heads=2,
                                                                                           max_steps=8)))


def test_depth_transformer_generates_like_recomputation_and_learns():
    model = _depth_lm().eval()
    prompt = _codes(2, 4)
    greedy = SamplingConfig(temperature=0)
    cached = model.generate(prompt, 5, greedy)
    assert torch.equal(cached, model.generate(prompt, 5, greedy, use_cache=False))
    logits = model(cached).logits  # teacher forcing chooses the same codes, level by level
    for level, level_logits in enumerate(logits):
        assert torch.equal(level_logits[:, 4:].argmax(-1), cached[:, level, 4:])
    model.train()
    assert _fit(model, _codes(3, 16, seed=5)) < 0.2
    with pytest.raises(ValueError, match="parallel pattern"):
        TokenLMConfig(SIZES, 50.0, "delay", depth=TransformerConfig(dim=16, heads=2))
