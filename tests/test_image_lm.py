"""ImageTokenLM: configs and model folders, the losses, KV-cached AR sampling against recomputation,
classifier-free guidance, memorising a few code grids by AR and by MaskGIT, and decoding the
sampled codes with an image or a video tokenizer."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from codec.checkpoint import load_checkpoint, model_fingerprint, read_checkpoint_info, save_pretrained
from codec.config import config_from_dict, config_to_dict
from codec.errors import CodecError
from codec.image.config import ImageTokenizerConfig
from codec.image.conv_tokenizer import ConvImageTokenizer
from codec.quantization import QuantizerConfig
from codec.video.config import VideoTokenizerConfig
from codec.video.tokenizer import CausalVideoTokenizer
from slm.image_lm import ImageTokenLM, ImageTokenLMConfig
from slm.maskgit import MASKED
from slm.transformer import TransformerConfig
from slm.visual_generation import GenerationOptions


def tiny(kind: str = "ar", sizes: tuple[int, ...] = (8, 6), grid: tuple[int, ...] = (4, 4), **overrides
         ) -> ImageTokenLMConfig:
    transformer = TransformerConfig(dim=64, layers=2, heads=4, causal=kind == "ar", max_steps=64)
    return ImageTokenLMConfig(kind, sizes, grid, **(dict(num_classes=4, transformer=transformer) | overrides))


def model_of(config: ImageTokenLMConfig, seed: int = 0) -> ImageTokenLM:
    torch.manual_seed(seed)
    return ImageTokenLM(config).eval()


def scrambled(model: ImageTokenLM) -> ImageTokenLM:
    """The model in float64 with large random weights: its greedy codes vary, unlike a fresh model's."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0, 0.5)
    return model.double()


GREEDY = GenerationOptions(temperature=0)


# --- configs and folders -------------------------------------------------------------------------
def test_config_round_trips_through_json_with_nested_tuples() -> None:
    config = tiny("maskgit", grid=(2, 3, 4), tokenizer="video-tiny", tokenizer_fingerprint="0123456789abcdef")
    data = json.loads(json.dumps(config_to_dict(config)))
    assert data["grid"] == [2, 3, 4] and data["transformer"]["causal"] is False
    restored = config_from_dict(ImageTokenLMConfig, data)
    assert restored == config and isinstance(restored.grid, tuple)
    assert isinstance(restored.transformer, TransformerConfig)
    assert restored.num_positions == 24 and restored.n_q == 2


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(kind="diffusion"), "kind must be 'ar' or 'maskgit'"),
    (dict(codebook_sizes=(8, 1)), "codebook sizes must be >= 2"),
    (dict(codebook_sizes=()), "codebook sizes must be >= 2"),
    (dict(grid=()), "grid must be positive"),
    (dict(grid=(4, 0)), "grid must be positive"),
    (dict(num_classes=-1), "num_classes >= 0"),
    (dict(cond_dropout=1.0), "0 <= cond_dropout < 1"),
    (dict(maskgit_steps=0), "maskgit_steps >= 1"),
    (dict(transformer=TransformerConfig(dim=32, heads=2, causal=False)), "ar model needs a causal transformer"),
    (dict(kind="maskgit"), "maskgit model needs a bidirectional transformer"),
    (dict(grid=(8, 8)), r"64 places plus the class step, more than transformer.max_steps \(64\)"),
])
def test_config_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(tiny("ar"), **overrides)


def test_config_from_json_names_the_bad_key() -> None:
    data = config_to_dict(tiny("ar"))
    with pytest.raises(ValueError, match="config.kind must be one of 'ar', 'maskgit'"):
        config_from_dict(ImageTokenLMConfig, data | {"kind": "var"})
    with pytest.raises(ValueError, match="ar model needs a causal transformer"):
        config_from_dict(ImageTokenLMConfig, data | {"transformer": {"causal": False}})


@pytest.mark.parametrize("kind", ["ar", "maskgit"])
def test_model_folder_round_trip(kind: str, tmp_path) -> None:
    model = model_of(tiny(kind, tokenizer="t", tokenizer_fingerprint="abc"))
    folder = save_pretrained(model, tmp_path / kind, {"license": "MIT"})
    assert read_checkpoint_info(folder).model_type == "image_token_lm"
    loaded = load_checkpoint(folder, model_type="image_token_lm")
    assert isinstance(loaded, ImageTokenLM) and loaded.config == model.config
    assert model_fingerprint(loaded) == model_fingerprint(model)
    options = GenerationOptions(temperature=1.0, cfg=2.0, steps=3)
    labels = torch.tensor([0, 3])
    first, _ = model.sample_codes(labels, options, torch.Generator().manual_seed(5))
    again, _ = loaded.sample_codes(labels, options, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)


# --- losses ----------------------------------------------------------------------------------------
def test_ar_loss_is_the_cross_entropy_of_each_place_given_the_earlier_ones() -> None:
    model = model_of(tiny("ar"))
    g = torch.Generator().manual_seed(1)
    codes = torch.stack([torch.randint(0, k, (3, 4, 4), generator=g) for k in (8, 6)], dim=1)  # [3, 2, 4, 4]
    labels = torch.tensor([0, 1, 4])
    out = model(codes, labels)
    tokens = codes.flatten(2)
    logits = model.logits(tokens[:, :, :-1], labels)
    expected = [F.cross_entropy(level.flatten(0, 1), tokens[:, q].flatten()) for q, level in enumerate(logits)]
    torch.testing.assert_close(out.level_losses, torch.stack(expected))
    torch.testing.assert_close(out.loss, torch.stack(expected).mean())
    assert out.level_counts.tolist() == [48, 48]
    assert abs(out.loss.item() - (math.log(8) + math.log(6)) / 2) < 0.5  # near chance at initialisation
    changed = codes.clone()
    changed[:, :, 3, 3] = 0  # the last place is never an input: the logits of every place stay
    torch.testing.assert_close(model(changed, labels).logits[0], out.logits[0])


def test_maskgit_scores_only_the_masked_tokens_of_a_cosine_mask() -> None:
    model = model_of(tiny("maskgit"))
    g = torch.Generator().manual_seed(2)
    codes = torch.stack([torch.randint(0, k, (4, 4, 4), generator=g) for k in (8, 6)], dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    out = model(codes, labels, generator=torch.Generator().manual_seed(7))
    mask = model.random_mask(4, torch.device("cpu"), torch.Generator().manual_seed(7))  # the same draw
    logits = model.logits(codes.flatten(2).masked_fill(mask, MASKED), labels)
    targets = codes.flatten(2)
    losses = [F.cross_entropy(level[mask[:, q]], targets[:, q][mask[:, q]], reduction="sum") for q, level in
              enumerate(logits)]
    assert out.level_counts.tolist() == mask.sum((0, 2)).tolist()
    torch.testing.assert_close(out.loss, sum(losses) / mask.sum())
    masks = model.random_mask(4000, torch.device("cpu"), torch.Generator().manual_seed(3))
    fractions = masks.flatten(1).float().mean(1)
    assert fractions.min() > 0 and fractions.max() == 1
    assert abs(fractions.mean().item() - 2 / math.pi) < 0.02  # E[cos(pi/2 r)], r ~ U[0, 1)


def test_training_drops_labels_to_the_null_class() -> None:
    model = model_of(tiny("ar", cond_dropout=0.5)).train()
    codes = torch.zeros(2000, 2, 4, 4, dtype=torch.long)
    labels = torch.zeros(2000, dtype=torch.long)
    seen = []
    model.class_embedding.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    model(codes, labels)
    assert set(seen[0].tolist()) == {0, 4} and abs((seen[0] == 4).float().mean().item() - 0.5) < 0.05
    model.eval()(codes[:5], labels[:5])
    assert seen[1].tolist() == [0] * 5


def test_bad_codes_and_labels_raise_clear_errors() -> None:
    model = model_of(tiny("ar"))
    with pytest.raises(ValueError, match=r"expected codes \[B, 2, 4, 4\]"):
        model(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class labels must be in 0..4"):
        model.sample_codes(torch.tensor([5]), GREEDY)
    with pytest.raises(ValueError, match="nothing to guide"):
        model_of(tiny("ar", num_classes=0)).sample_codes(torch.tensor([0]), GenerationOptions(cfg=2.0))


# --- AR sampling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [GREEDY, GenerationOptions(temperature=0, cfg=2.5),
                                     GenerationOptions(temperature=1.0, top_k=3, cfg=1.5)])
def test_kv_cached_sampling_equals_recomputation(options: GenerationOptions) -> None:
    model = scrambled(model_of(tiny("ar")))
    labels = torch.tensor([0, 1, 2, 4])
    cached, passes = model.sample_codes(labels, options, torch.Generator().manual_seed(4))
    recomputed, _ = model.sample_codes(labels, options, torch.Generator().manual_seed(4), use_cache=False)
    assert torch.equal(cached, recomputed)
    assert passes == 16 * (2 if options.cfg != 1 else 1)
    assert len(cached[:, 0].unique()) >= 6 and not torch.equal(cached[0], cached[1])  # varied, class-dependent


def test_guidance_is_the_linear_mix_of_conditional_and_null_class_logits() -> None:
    model = scrambled(model_of(tiny("ar")))
    labels = torch.tensor([0, 1, 2, 3])
    conditional, passes = model.sample_codes(labels, GenerationOptions(temperature=0, cfg=1.0))
    assert passes == 16  # scale 1: no null-class branch
    null_class, _ = model.sample_codes(torch.full((4,), 4), GREEDY)
    only_null, passes = model.sample_codes(labels, GenerationOptions(temperature=0, cfg=0.0))
    assert passes == 32 and torch.equal(only_null, null_class)  # cfg 0: the unconditional branch alone
    guided, _ = model.sample_codes(labels, GenerationOptions(temperature=0, cfg=4.0))
    assert not torch.equal(guided, conditional) and not torch.equal(guided, null_class)


# --- memorising a few grids ------------------------------------------------------------------------
GRIDS = torch.stack([torch.stack([torch.randint(0, k, (4, 4), generator=torch.Generator().manual_seed(10 + c))
                                  for k in (8, 6)]) for c in range(4)])  # [4 classes, Q=2, 4, 4]


def trained(kind: str, steps: int) -> ImageTokenLM:
    model = model_of(tiny(kind), seed=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    labels = torch.arange(4).repeat(4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = model(GRIDS[labels], labels, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_ar_memorises_a_grid_per_class() -> None:
    model = trained("ar", 200)
    labels = torch.arange(4)
    assert model(GRIDS, labels).level_accuracy.tolist() == [1.0, 1.0]
    codes, passes = model.sample_codes(labels, GREEDY)
    assert torch.equal(codes, GRIDS) and passes == 16
    guided, passes = model.sample_codes(labels, GenerationOptions(temperature=0, cfg=3.0))
    assert torch.equal(guided, GRIDS) and passes == 32


def test_maskgit_recovers_the_grids_in_a_few_steps() -> None:
    model = trained("maskgit", 350)
    labels = torch.arange(4)
    for steps in (2, 4, 8):
        codes, passes = model.sample_codes(labels, GenerationOptions(temperature=0, steps=steps))
        assert torch.equal(codes, GRIDS) and passes == steps
    sampled, _ = model.sample_codes(labels, GenerationOptions(steps=4), torch.Generator().manual_seed(0))
    assert (sampled == GRIDS).float().mean() > 0.95  # the memorised distributions are sharp: sampling finds them too
    guided, passes = model.sample_codes(labels, GenerationOptions(temperature=0, steps=4, cfg=2.0))
    assert torch.equal(guided, GRIDS) and passes == 8


# --- decoding with a tokenizer ---------------------------------------------------------------------
def test_generate_decodes_with_the_tokenizer_at_the_model_levels() -> None:
    torch.manual_seed(0)
    quantizer = QuantizerConfig(kind="ema", n_q=3, codebook_size=8)
    tokenizer = ConvImageTokenizer(ImageTokenizerConfig(channels=1, image_size=16, downsample=4, width=8,
                                                        latent_dim=4, quantizer=quantizer)).eval()
    model = model_of(tiny("maskgit", sizes=(8, 8), tokenizer="conv-tiny",
                          tokenizer_fingerprint=model_fingerprint(tokenizer)))
    labels = torch.tensor([1, 2, 4])
    options = GenerationOptions(temperature=1.0, steps=5, cfg=2.0)
    result = model.generate(labels, tokenizer, options, torch.Generator().manual_seed(8))
    assert result.forward_passes == 10 and tokenizer.token_spec.n_q == 3  # the tokenizer's levels restored
    codes, _ = model.sample_codes(labels, options, torch.Generator().manual_seed(8))
    tokenizer.set_num_codebooks(2)
    torch.testing.assert_close(result.images, tokenizer.decode(codes))
    assert result.images.shape == (3, 1, 16, 16) and 0 <= result.images.min() and result.images.max() <= 1

    other = ConvImageTokenizer(tokenizer.config)
    with pytest.raises(CodecError, match=r"not the one this model was trained on \('conv-tiny', fingerprint"):
        model.generate(labels, other, options)


def test_generate_a_video_frame_by_frame_in_raster_order() -> None:
    torch.manual_seed(0)
    quantizer = QuantizerConfig(kind="ema", n_q=1, codebook_size=8)
    tokenizer = CausalVideoTokenizer(VideoTokenizerConfig(image_size=16, width=8, latent_dim=4,
                                                          quantizer=quantizer)).eval()
    frames = 1 + tokenizer.config.temporal_downsample
    grid = (2, *tokenizer.token_spec.grid)
    model = model_of(tiny("ar", sizes=(8,), grid=grid, tokenizer_fingerprint=model_fingerprint(tokenizer)))
    result = model.generate(torch.tensor([0, 3]), tokenizer, GenerationOptions(temperature=1.0, top_k=4),
                            torch.Generator().manual_seed(9))
    assert result.images.shape == (2, 1, frames, 16, 16) and result.forward_passes == math.prod(grid)
