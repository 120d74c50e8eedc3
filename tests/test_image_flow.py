"""Continuous image tokens with a flow head: normalisation, the KV cache, MAR's reveal order, learning
two classes, the tokenizer check and model folders."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slm.image_flow as image_flow
from codec.checkpoint import load_checkpoint, model_fingerprint, save_pretrained
from codec.errors import CodecError
from codec.image.config import ImageTokenizerConfig
from codec.image.conv_tokenizer import ConvImageTokenizer
from codec.image.datasets import digits_split, resize
from slm.flow import FlowHeadConfig
from slm.image_flow import ImageFlowLM, ImageFlowLMConfig, latent_statistics, reveal_order, reveal_schedule
from slm.latent_metrics import energy_distance
from slm.transformer import TransformerConfig
from slm.visual_generation import GenerationOptions


def tokenizer(seed: int = 0) -> ConvImageTokenizer:
    """A tiny conv tokenizer (random weights: its latents are a fixed function of the image): 16x16 -> 4x4x4."""
    torch.manual_seed(seed)
    return ConvImageTokenizer(ImageTokenizerConfig(channels=1, image_size=16, downsample=4, width=8,
                                                   latent_dim=4)).eval()


def class_latents(tok: ConvImageTokenizer, per_class: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [2 per_class, 4, 4, 4] of the first training digits 0 and 1, and their labels 0, 1."""
    images, labels = digits_split("train")
    chosen = torch.cat([(labels == c).nonzero()[:per_class, 0] for c in (0, 1)])
    with torch.no_grad():
        latents = tok.encode_latent(resize(images[chosen], 16, 16))
    return latents, labels[chosen]


def flow_model(tok: ConvImageTokenizer, latents: torch.Tensor, order: str = "raster", seed: int = 0,
               **overrides) -> ImageFlowLM:
    torch.manual_seed(seed)
    mean, std = latent_statistics(latents)
    fields = dict(grid=(4, 4), latent_dim=4, num_classes=2, latent_mean=mean, latent_std=std, tokenizer="tiny",
                  tokenizer_fingerprint=model_fingerprint(tok), order=order, head_steps=10,
                  transformer=TransformerConfig(dim=64, layers=2, heads=4, causal=order == "raster", max_steps=32),
                  head=FlowHeadConfig(dim=64, blocks=2, noise_draws=2))
    return ImageFlowLM(ImageFlowLMConfig(**(fields | overrides)))


def test_normalisation_round_trip_and_shapes() -> None:
    tok = tokenizer()
    latents, labels = class_latents(tok)
    model = flow_model(tok, latents).eval()
    normalised = model.normalize(latents)
    flat = normalised.transpose(0, 1).flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.denormalize(normalised), latents, atol=1e-5, rtol=1e-5)
    assert torch.equal(model._grid(model._tokens(latents)), latents)
    assert model._tokens(latents)[0, 5].tolist() == latents[0, :, 1, 1].tolist()  # raster order: row 1, column 1
    out = model(latents[:3], labels[:3])
    assert out.loss.shape == () and out.tokens.item() == 3 * 16 and torch.isfinite(out.loss)
    generated = model.generate(labels[:2], tok, GenerationOptions(), torch.Generator().manual_seed(0))
    assert generated.images.shape == (2, 1, 16, 16) and generated.forward_passes == 16
    assert 0 <= generated.images.min() and generated.images.max() <= 1
    with pytest.raises(ValueError, match="expected latents"):
        model(latents[:3, :, :2], labels[:3])
    with pytest.raises(ValueError, match="generates in raster order, not random"):
        model.sample_latents(labels[:2], GenerationOptions(order="random"))


def test_configs_are_validated() -> None:
    tok = tokenizer()
    latents, _ = class_latents(tok, per_class=2)
    with pytest.raises(ValueError, match="order 'random' needs transformer.causal = False"):
        flow_model(tok, latents, "random", transformer=TransformerConfig(causal=True))
    with pytest.raises(ValueError, match="latent_dim"):
        flow_model(tok, latents, latent_mean=(0.0,))
    with pytest.raises(ValueError, match="max_steps"):
        flow_model(tok, latents, transformer=TransformerConfig(max_steps=8))


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_kv_cached_raster_generation_equals_recomputation(cfg: float) -> None:
    tok = tokenizer()
    latents, labels = class_latents(tok, per_class=2)
    model = flow_model(tok, latents).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.1)  # a head whose velocity depends on its input
    options = GenerationOptions(cfg=cfg)
    cached = model.sample_latents(labels, options, torch.Generator().manual_seed(5), use_cache=True)
    recomputed = model.sample_latents(labels, options, torch.Generator().manual_seed(5), use_cache=False)
    torch.testing.assert_close(cached, recomputed, atol=1e-4, rtol=1e-4)
    other_noise = model.sample_latents(labels, options, torch.Generator().manual_seed(6))
    assert not torch.allclose(cached, other_noise, atol=1e-2)


def test_reveal_schedule_is_cosine_and_covers_every_position() -> None:
    assert reveal_schedule(16, 8) == [1, 1, 1, 2, 3, 2, 3, 3]  # 16 cos(pi t / 16) masked after step t
    assert reveal_schedule(4, 8) == [1, 1, 1, 1]  # never more steps than positions
    assert reveal_schedule(256, 1) == [256]
    steps = reveal_order(3, 16, 5, torch.Generator().manual_seed(0))
    assert [s.shape[1] for s in steps] == reveal_schedule(16, 5)
    for item in torch.cat(steps, dim=1):
        assert sorted(item.tolist()) == list(range(16))


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_mar_generation_reveals_every_position_exactly_once(cfg: float, monkeypatch) -> None:
    tok = tokenizer()
    latents, labels = class_latents(tok, per_class=2)
    model = flow_model(tok, latents, "random").eval()
    rows = []

    def fake_head(head, cond, steps, solver, temperature, guidance, null_cond, generator):
        """Every token drawn at MAR step t (from 1) is t in every channel."""
        assert (null_cond is not None) == (guidance != 1)
        assert null_cond is None or null_cond.shape == cond.shape  # the unconditional branch, row for row
        rows.append(cond.shape[0])
        return torch.full((cond.shape[0], 4), float(len(rows)))

    monkeypatch.setattr(image_flow, "sample_head", fake_head)
    passes = []
    model.transformer.register_forward_hook(lambda module, inputs, output: passes.append(output.shape[0]))
    options = GenerationOptions(steps=5, cfg=cfg, order="random")
    step_of = model.normalize(model.sample_latents(labels[:3], options)).round()  # [3, 4, 4, 4]
    counts = reveal_schedule(16, 5)
    assert rows == [3 * c for c in counts]
    for item in step_of:
        assert torch.equal(item[0], item[1])  # one draw per position (all channels)
        assert torch.bincount(item[0].flatten().long(), minlength=6).tolist() == [0] + counts
    guided = cfg != 1
    assert model.forward_passes(options) == 5 * (1 + guided) == len(passes) * (1 + guided)
    assert set(passes) == {3 * (1 + guided)}  # both branches in one batch


@pytest.mark.parametrize("order", ["raster", "random"])
def test_learns_two_classes(order: str) -> None:
    tok = tokenizer()
    latents, labels = class_latents(tok)
    model = flow_model(tok, latents, order)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        loss = model.train()(latents, labels, generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-30:]) / 30
    assert last < 0.6 * first, (first, last)
    model.eval()
    options = GenerationOptions(order=order)
    real = {c: latents[labels == c].flatten(1) for c in (0, 1)}
    for c in (0, 1):
        wanted = torch.full((16,), c)
        generated = model.sample_latents(wanted, options, torch.Generator().manual_seed(c)).flatten(1)
        assert energy_distance(generated, real[c]) < energy_distance(generated, real[1 - c])


def test_another_tokenizer_is_a_clear_error() -> None:
    tok = tokenizer(0)
    latents, labels = class_latents(tok, per_class=2)
    model = flow_model(tok, latents).eval()
    with pytest.raises(CodecError, match=r"not the one this model was trained on \('tiny', fingerprint"):
        model.generate(labels, tokenizer(1))


@pytest.mark.parametrize("order", ["raster", "random"])
def test_model_folder_round_trip(order: str, tmp_path) -> None:
    tok = tokenizer()
    latents, labels = class_latents(tok, per_class=2)
    model = flow_model(tok, latents, order).eval()
    torch.nn.init.normal_(model.head.out.weight, std=0.1)
    save_pretrained(model, tmp_path / "flow")
    loaded = load_checkpoint(tmp_path / "flow", model_type="image_flow_lm")
    assert type(loaded) is ImageFlowLM and loaded.config == model.config
    assert dataclasses.asdict(loaded.config)["grid"] == (4, 4)
    options = GenerationOptions(order=order, steps=3, cfg=1.5)
    a = model.sample_latents(labels, options, torch.Generator().manual_seed(2))
    b = loaded.sample_latents(labels, options, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    loss_a = model(latents, labels, torch.Generator().manual_seed(0)).loss
    assert torch.equal(loss_a, loaded(latents, labels, torch.Generator().manual_seed(0)).loss)
