"""Next-scale prediction (VAR): the block-causal mask, the sequence layout, learning a class's codes,
the tokenizer check and model folders."""

from __future__ import annotations

import pytest
import torch

from codec.checkpoint import load_checkpoint, model_fingerprint, save_pretrained
from codec.errors import CodecError
from codec.image.config import ImageTokenizerConfig
from codec.image.datasets import digits_split, resize
from codec.image.multiscale import MultiScaleTokenizer
from codec.quantization import QuantizerConfig
from slm.transformer import Transformer, TransformerConfig
from slm.var import NextScaleLM, NextScaleLMConfig, block_causal_mask, scale_index
from slm.visual_generation import GenerationOptions

SCALES = (1, 2, 4)  # N = 1 + 4 + 16 = 21
CLASSES = (0, 1, 3, 7)


def digit_images(classes: tuple[int, ...] = CLASSES) -> torch.Tensor:
    """The first training digit of each class, [len(classes), 1, 16, 16]."""
    images, labels = digits_split("train")
    return resize(torch.stack([images[(labels == c).nonzero()[0, 0]] for c in classes]), 16, 16)


def tokenizer(seed: int = 0) -> MultiScaleTokenizer:
    """A tiny multi-scale tokenizer whose codebook one training-mode pass over digits initialised (k-means)."""
    torch.manual_seed(seed)
    quantizer = QuantizerConfig(kind="ema", n_q=1, codebook_size=32, kmeans_iters=5)
    config = ImageTokenizerConfig(architecture="multiscale", channels=1, image_size=16, downsample=4, width=8,
                                  latent_dim=8, quantizer=quantizer, scales=SCALES)
    model = MultiScaleTokenizer(config).train()
    images, _ = digits_split("train")
    model(resize(images[:64], 16, 16))
    return model.eval()


def var_model(tok: MultiScaleTokenizer, seed: int = 0, **overrides) -> NextScaleLM:
    torch.manual_seed(seed)
    fields = dict(scales=SCALES, codebook_size=32, latent_dim=8, num_classes=len(CLASSES), tokenizer="tiny",
                  tokenizer_fingerprint=model_fingerprint(tok),
                  transformer=TransformerConfig(dim=64, layers=2, heads=4, causal=False, max_steps=32))
    return NextScaleLM(NextScaleLMConfig(**(fields | overrides)))


# --- the block-causal mask ----------------------------------------------------------------------


@torch.no_grad()
def test_block_causal_mask_keeps_later_scales_out() -> None:
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, layers=2, heads=4, causal=False, max_steps=32)).eval()
    mask = block_causal_mask(SCALES)
    assert mask.shape == (21, 21) and scale_index(SCALES).tolist() == [0] + [1] * 4 + [2] * 16
    x = torch.randn(2, 21, 32)
    later = x.clone()
    later[:, 5:] = torch.randn(2, 16, 32)  # scale 3's inputs change
    same_scale = x.clone()
    same_scale[:, 4] = torch.randn(2, 32)  # the last input of scale 2 changes
    out = model(x, attn_mask=mask)
    torch.testing.assert_close(model(later, attn_mask=mask)[:, :5], out[:, :5], atol=1e-6, rtol=0)
    changed = model(same_scale, attn_mask=mask)
    torch.testing.assert_close(changed[:, :1], out[:, :1], atol=1e-6, rtol=0)  # scale 1 does not see scale 2
    assert not torch.allclose(changed[:, 1:4], out[:, 1:4], atol=1e-4)  # within a scale: bidirectional
    assert not torch.allclose(model(later)[:, :5], model(x)[:, :5], atol=1e-4)  # no mask: everything mixes
    # per-item masks [B, S, S] combine with the key padding mask: item 1 may not attend to step 0
    per_item = mask.expand(2, 21, 21).clone()
    per_item[1, :, 0] = False
    keys = torch.ones(2, 21, dtype=torch.bool)
    keys[1, 0] = False
    torch.testing.assert_close(model(x, keys, mask), model(x, attn_mask=per_item), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="attn_mask must be bool"):
        model(x, attn_mask=mask[:20])


@torch.no_grad()
def test_attn_mask_equal_to_causality_changes_nothing() -> None:
    torch.manual_seed(0)
    causal = Transformer(TransformerConfig(dim=32, layers=2, heads=4, max_steps=32)).eval()
    x = torch.randn(2, 12, 32)
    assert torch.equal(causal(x, attn_mask=torch.ones(12, 12, dtype=torch.bool).tril()), causal(x))
    everything = torch.ones(12, 12, dtype=torch.bool)
    assert torch.equal(causal(x, attn_mask=everything), causal(x))


# --- the model ------------------------------------------------------------------------------------


def test_sequence_layout_and_forward_passes() -> None:
    tok = tokenizer()
    model = var_model(tok).eval()
    assert model.config.num_tokens == 21 == tok.config.grid[1]
    calls = []
    model.transformer.register_forward_hook(lambda module, inputs, output: calls.append(tuple(output.shape)))
    labels = torch.tensor([0, 2])
    out = model.generate(labels, tok, GenerationOptions(temperature=1.0), torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 1, 16, 16) and 0 <= out.images.min() and out.images.max() <= 1
    assert out.forward_passes == 3 and calls == [(2, 1, 64), (2, 5, 64), (2, 21, 64)]  # one pass per scale
    calls.clear()
    guided = model.generate(labels, tok, GenerationOptions(cfg=2.0), torch.Generator().manual_seed(0))
    assert guided.forward_passes == 6 and calls == [(4, 1, 64), (4, 5, 64), (4, 21, 64)]  # both branches batched
    with torch.no_grad():
        codes = tok.encode(digit_images()[:2])
        assert model(codes, labels, tok).loss.shape == ()
    with pytest.raises(ValueError, match="expected codes"):
        model(codes[..., :5], labels, tok)
    with pytest.raises(ValueError, match="labels must be"):
        model(codes, torch.tensor([0, 4]), tok)


def test_learns_each_class_codes_and_greedy_sampling_reproduces_them() -> None:
    tok = tokenizer()
    images = digit_images()
    with torch.no_grad():
        codes = tok.encode(images)  # [4, 1, 1, 21]
    assert len({tuple(c.flatten().tolist()) for c in codes}) == len(CLASSES)  # the classes' codes differ
    model = var_model(tok, cond_dropout=0.1)
    labels = torch.arange(len(CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    first = None
    for _ in range(200):
        out = model.train()(codes, labels, tok, generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = out.loss.item() if first is None else first
    model.eval()
    with torch.no_grad():  # without the null-class dropout of training
        final = model(codes, labels, tok)
    assert final.loss.item() < 0.05 * first and final.accuracy.item() == 1.0
    greedy = GenerationOptions(temperature=0.0)
    generated = model.generate_codes(labels, tok, greedy)
    assert torch.equal(generated, codes)
    images_out = model.generate(labels, tok, greedy)
    torch.testing.assert_close(images_out.images, tok.decode(codes).detach(), atol=1e-6, rtol=0)
    assert all(p.grad is None for p in tok.parameters())  # no gradient reaches the tokenizer
    with torch.no_grad():
        assert torch.equal(tok.encode(images), codes)


def test_another_tokenizer_is_a_clear_error() -> None:
    tok, other = tokenizer(0), tokenizer(1)
    model = var_model(tok).eval()
    with pytest.raises(CodecError, match=r"not the one this model was trained on \('tiny', fingerprint"):
        model.generate(torch.tensor([0]), other)
    model.check_tokenizer(tok)  # the right one passes


def test_configs_are_validated() -> None:
    with pytest.raises(ValueError, match="causal must be false"):
        NextScaleLMConfig(SCALES, 32, 8, 2, "t", "f", transformer=TransformerConfig(causal=True))
    with pytest.raises(ValueError, match="max_steps"):
        NextScaleLMConfig(SCALES, 32, 8, 2, "t", "f", transformer=TransformerConfig(causal=False, max_steps=20))
    with pytest.raises(ValueError, match="increasing"):
        NextScaleLMConfig((2, 1, 4), 32, 8, 2, "t", "f")


def test_model_folder_round_trip(tmp_path) -> None:
    tok = tokenizer()
    model = var_model(tok).eval()
    save_pretrained(model, tmp_path / "var")
    loaded = load_checkpoint(tmp_path / "var", model_type="next_scale_lm")
    assert type(loaded) is NextScaleLM and loaded.config == model.config
    labels = torch.tensor([1, 3])
    options = GenerationOptions(temperature=1.0, top_k=5, cfg=1.5)
    a = model.generate_codes(labels, tok, options, torch.Generator().manual_seed(3))
    b = loaded.generate_codes(labels, tok, options, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
