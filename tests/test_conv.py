"""The speed-ups in the SEANet convolutions keep outputs and gradients (to float rounding)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codec.audio.conv import StreamableConv1d, extra_padding_for_conv1d
from codec.audio.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder


@pytest.mark.parametrize("kernel, stride, dilation", [(7, 1, 1), (3, 1, 3), (1, 1, 1), (4, 2, 1), (16, 8, 1), (10, 5, 1)])
@pytest.mark.parametrize("length", [1, 37, 160, 161])
def test_causal_conv_pads_inside_the_conv_with_the_same_result(kernel, stride, dilation, length):
    """Causal zero padding done by the conv itself equals padding a copy of the input first (for a
    few output shapes oneDNN sums in another order: equal to float rounding; the bundled models'
    codes are pinned in test_default_model.py)."""
    torch.manual_seed(0)
    conv = StreamableConv1d(3, 5, kernel, stride, dilation, causal=True, norm="weight_norm")
    x = torch.randn(2, 3, length)
    extra = extra_padding_for_conv1d(length, conv.effective_kernel, stride, conv.padding_total)
    expected = conv.conv(F.pad(x, (conv.padding_total, extra)))
    y = conv(x)
    assert y.shape[-1] == -(-length // stride)
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-7)


def _models(config: SEANetConfig) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder, and copies whose ELUs all compute out of place."""
    torch.manual_seed(0)
    models = nn.ModuleList([SEANetEncoder(config), SEANetDecoder(config)])
    plain = copy.deepcopy(models)
    inplace = [m for m in models.modules() if isinstance(m, nn.ELU) and m.inplace]
    assert len(inplace) >= 6  # most of them: every one after a residual sum or a conv's output
    for m in plain.modules():
        if isinstance(m, nn.ELU):
            m.inplace = False
    return models, plain


@pytest.mark.parametrize("causal", [True, False])
def test_in_place_activations_keep_outputs_and_gradients(causal):
    config = SEANetConfig(n_filters=4, dimension=8, ratios=(4, 2), lstm_layers=1, causal=causal)
    (encoder, decoder), (plain_encoder, plain_decoder) = _models(config)
    x = torch.randn(2, 1, 640)
    y = decoder(encoder(x))
    y_plain = plain_decoder(plain_encoder(x))
    assert torch.equal(y, y_plain)
    y.square().mean().backward()
    y_plain.square().mean().backward()
    grads = [(p.grad, q.grad) for p, q in zip([*encoder.parameters(), *decoder.parameters()],
                                               [*plain_encoder.parameters(), *plain_decoder.parameters()])]
    assert len(grads) > 10
    for a, b in grads:  # an in-place ELU's backward computes exp(x) from its output: rounding apart
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)
