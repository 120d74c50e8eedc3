"""The LM transformer: KV-cached chunks equal one pass; masks and causality hold."""

from __future__ import annotations

import pytest
import torch

from codec.streaming import streaming
from slm.transformer import Transformer, TransformerConfig


def _model(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(dim=32, layers=2, heads=4, max_steps=64, **kw)).eval()


@torch.no_grad()
def test_kv_cache_chunks_equal_one_pass():
    model = _model()
    x = torch.randn(2, 20, 32)
    full = model(x)
    with streaming(model, batch_size=2):
        parts = [model(chunk) for chunk in x.split([5, 1, 7, 7], dim=1)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    with streaming(model, batch_size=2):  # one step at a time, as generation does
        steps = [model(x[:, i:i + 1]) for i in range(20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_causal_outputs_ignore_the_future_and_padding():
    model = _model()
    x = torch.randn(1, 12, 32)
    changed = x.clone()
    changed[:, 8:] = torch.randn(1, 4, 32)
    torch.testing.assert_close(model(x)[:, :8], model(changed)[:, :8], atol=1e-6, rtol=0)
    bidirectional = _model(causal=False)
    assert not torch.allclose(bidirectional(x)[:, :8], bidirectional(changed)[:, :8])
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[:, :8] = True  # steps 8.. are padding: a bidirectional model must not look at them
    torch.testing.assert_close(bidirectional(x, mask)[:, :8], bidirectional(changed, mask)[:, :8], atol=1e-6, rtol=0)


def test_limits_and_bad_configs():
    model = _model()
    with pytest.raises(ValueError, match="max_steps"):
        with streaming(model, batch_size=1):
            model(torch.randn(1, 60, 32))
            model(torch.randn(1, 10, 32))
    with pytest.raises(ValueError, match="no KV cache"):
        with streaming(_model(causal=False), batch_size=1):
            pass
    with pytest.raises(ValueError, match="even size"):
        TransformerConfig(dim=30, heads=4)
