"""The three image tokenizers: the Tokenizer contract, token rates, model folders, the multi-scale
token layout, a short training run and the errors of bad inputs and configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from codec.checkpoint import load_checkpoint, save_pretrained
from codec.image import build_image_tokenizer
from codec.image.config import ImageTokenizerConfig
from codec.image.conv_tokenizer import ConvImageTokenizer
from codec.image.multiscale import MultiScaleTokenizer
from codec.image.titok import TiTokTokenizer
from codec.quantization import QuantizerConfig

from .tokenizer_conformance import check_tokenizer

QUANTIZERS = {
    "ema": QuantizerConfig(kind="ema", n_q=2, codebook_size=32, kmeans_iters=2),
    "factorized": QuantizerConfig(kind="factorized", n_q=2, codebook_size=32, codebook_dim=4),
    "fsq": QuantizerConfig(kind="fsq", fsq_levels=(5, 4, 3)),
    "lfq": QuantizerConfig(kind="lfq", lfq_bits=6),
}
CASES = [("conv", kind) for kind in QUANTIZERS] + [("titok", k) for k in ("ema", "fsq", "lfq")] + [
    ("multiscale", k) for k in ("ema", "fsq", "lfq")]


def tiny(architecture: str, kind: str = "ema", **overrides) -> ImageTokenizerConfig:
    quantizer = QUANTIZERS[kind]
    if architecture == "multiscale" and quantizer.residual:
        quantizer = dataclasses.replace(quantizer, n_q=1)
    fields = dict(architecture=architecture, channels=1, image_size=16, downsample=4, width=8, latent_dim=8,
                  quantizer=quantizer, num_latent_tokens=6, transformer_dim=32, transformer_layers=1,
                  transformer_heads=2, scales=(1, 2, 4))
    return ImageTokenizerConfig(**(fields | overrides))


def trained_briefly(config: ImageTokenizerConfig) -> torch.nn.Module:
    """A tokenizer after two training passes (EMA codebooks initialised), in eval mode."""
    torch.manual_seed(0)
    model = build_image_tokenizer(config).train()
    for _ in range(2):
        model(torch.rand(4, config.channels, config.image_size, config.image_size))
    return model.eval()


@pytest.mark.parametrize(("architecture", "kind"), CASES)
def test_every_architecture_is_a_tokenizer(architecture: str, kind: str) -> None:
    model = trained_briefly(tiny(architecture, kind))
    x = torch.rand(3, 1, 16, 16)
    check_tokenizer(model, x)
    with torch.no_grad():
        out = model(x)  # the training forward in eval mode: the codes and images of encode / decode
        assert torch.equal(out.codes, model.encode(x))
        torch.testing.assert_close(out.reconstruction.clamp(0, 1), model.decode(out.codes), atol=1e-5, rtol=0)
    assert out.quantizer.usage.shape == out.quantizer.perplexity.shape == (out.codes.shape[1],)
    assert out.quantizer.quantized.shape == model.encode_latent(x).shape


def test_build_picks_the_architecture_and_classes_check_it() -> None:
    classes = {"conv": ConvImageTokenizer, "titok": TiTokTokenizer, "multiscale": MultiScaleTokenizer}
    for architecture, cls in classes.items():
        assert type(build_image_tokenizer(tiny(architecture))) is cls
    with pytest.raises(ValueError, match="TiTokTokenizer needs architecture 'titok', got 'conv'"):
        TiTokTokenizer(tiny("conv"))


# --- token rates --------------------------------------------------------------------------------


def test_token_spec_numbers() -> None:
    conv = ConvImageTokenizer(ImageTokenizerConfig(width=8, quantizer=QuantizerConfig(n_q=2, codebook_size=256)))
    spec = conv.token_spec
    assert (spec.modality, spec.grid, spec.n_q, spec.residual, spec.latent_dim) == ("image", (8, 8), 2, True, 16)
    assert spec.bits_per_frame == 8 * 8 * 2 * 8 == 1024 and spec.num_tokens() == 128
    conv.set_num_codebooks(1)
    assert conv.token_spec.bits_per_frame == 512
    titok = ImageTokenizerConfig(architecture="titok", num_latent_tokens=32,
                                 quantizer=QuantizerConfig(kind="lfq", lfq_bits=12)).token_spec
    assert (titok.grid, titok.codebook_sizes, titok.bits_per_frame, titok.residual) == ((1, 32), (4096,), 384, False)
    fsq_quantizer = QuantizerConfig(kind="fsq", fsq_levels=(8, 8))
    fsq = ImageTokenizerConfig(architecture="multiscale", quantizer=fsq_quantizer).token_spec
    assert (fsq.grid, fsq.codebook_sizes, fsq.fsq_levels) == ((1, 1 + 4 + 16 + 64), (64,), (8, 8))
    assert fsq.bits_per_frame == 85 * 6 and not fsq.residual  # a prefix of scales is no prefix of levels
    ema_quantizer = QuantizerConfig(n_q=1, codebook_size=512)
    ema = ImageTokenizerConfig(architecture="multiscale", quantizer=ema_quantizer).token_spec
    assert (ema.n_q, ema.residual, ema.bits_per_frame) == (1, False, 85 * 9)


def test_conv_takes_any_multiple_of_the_downsampling() -> None:
    model = trained_briefly(tiny("conv"))
    x = torch.rand(2, 1, 12, 20)
    codes = model.encode(x)
    assert codes.shape == (2, 2, 3, 5) and model.decode(codes).shape == x.shape
    assert model.encode_latent(x).shape == (2, 8, 3, 5)


# --- model folders ------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["conv", "titok", "multiscale"])
def test_save_and_load_give_identical_outputs(architecture: str, tmp_path) -> None:
    model = trained_briefly(tiny(architecture, "ema"))
    save_pretrained(model, tmp_path / "model")
    loaded = load_checkpoint(tmp_path / "model")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        codes = model.encode(x)
        assert torch.equal(loaded.encode(x), codes)
        assert torch.equal(loaded.decode(codes), model.decode(codes))
        assert torch.equal(loaded.encode_latent(x), model.encode_latent(x))


# --- multi-scale token layout -------------------------------------------------------------------


def test_split_and_merge_scales_round_trip_and_prefixes() -> None:
    model = trained_briefly(tiny("multiscale"))
    codes = model.encode(torch.rand(2, 1, 16, 16))
    assert codes.shape == (2, 1, 1, 1 + 4 + 16)
    maps = model.split_scales(codes)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 1, 1), (2, 1, 2, 2), (2, 1, 4, 4)]
    assert torch.equal(maps[1].flatten(2), codes[..., 1:5].squeeze(2))  # coarse to fine, row-major
    assert torch.equal(model.merge_scales(maps), codes)
    assert len(model.split_scales(codes[..., :5])) == 2  # the first two scales
    with pytest.raises(ValueError, match=r"N one of \[1, 5, 21\]"):
        model.split_scales(codes[..., :4])
    with pytest.raises(ValueError, match="expected maps of the first scales of"):
        model.merge_scales([maps[1]])


def test_partial_latent_accumulates_the_scales() -> None:
    model = trained_briefly(tiny("multiscale"))
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        codes = model.encode(x)
        full = model.partial_latent(codes)
        assert full.shape == (2, 8, 4, 4)
        torch.testing.assert_close(full, model.accumulate(model.dequantize(codes)))
        assert torch.equal(model.decode(codes), model.decoder(full).clamp(0, 1))
        # scale by scale: the next scale's residual target is the area-downsampled rest of f
        f = model.encoder(x)
        first_two = model.partial_latent(codes[..., :5])
        residual = F.interpolate(f - first_two, size=(4, 4), mode="area")
        torch.testing.assert_close(model.encode_latent(x)[..., 5:], residual.flatten(2).unsqueeze(2))
        # the first residual is the mean of f; later residuals shrink as scales are added
        torch.testing.assert_close(model.encode_latent(x)[..., 0, 0], f.mean((2, 3)))
        errors = [(f - model.partial_latent(codes[..., :n])).pow(2).mean() for n in (1, 5, 21)]
        assert errors[2] < errors[0]


def test_multiscale_has_one_level() -> None:
    model = MultiScaleTokenizer(tiny("multiscale"))
    model.set_num_codebooks(1)
    with pytest.raises(ValueError, match="single codebook level, not 2"):
        model.set_num_codebooks(2)
    with pytest.raises(ValueError, match="quantizer.n_q must be 1, got 2"):
        tiny("multiscale", quantizer=QUANTIZERS["ema"])


# --- training -----------------------------------------------------------------------------------


def blobs(count: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random images [count, 1, 32, 32] in [0, 1]: 4x4 noise upsampled 8x."""
    coarse = torch.rand(count, 1, 4, 4, generator=generator)
    return F.interpolate(coarse, scale_factor=8, mode="bilinear", align_corners=False)


def test_a_short_training_beats_the_mean_image_by_far() -> None:
    torch.manual_seed(0)
    config = ImageTokenizerConfig(width=8, latent_dim=8, num_blocks=1,
                                  quantizer=QuantizerConfig(kind="ema", n_q=2, codebook_size=64, kmeans_iters=5))
    model = ConvImageTokenizer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = blobs(8, generator)
        out = model(x)
        loss = F.mse_loss(out.reconstruction, x) + out.quantizer.commitment_loss + out.quantizer.codebook_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    held_out = blobs(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        mse = F.mse_loss(model.decode(model.encode(held_out)), held_out).item()
    baseline = F.mse_loss(held_out.mean(0, keepdim=True).expand_as(held_out), held_out).item()
    assert mse < 0.3 * baseline, (mse, baseline)  # about 0.14 of it after these 150 steps


# --- errors -------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    conv, titok, multiscale = (build_image_tokenizer(tiny(a)).eval() for a in ("conv", "titok", "multiscale"))
    with pytest.raises(ValueError, match=r"expected images \[B, C=1, H, W\], got shape \(2, 3, 16, 16\)"):
        conv.encode(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected images \[B, C=1, H, W\], got shape \(1, 16, 16\)"):
        conv.encode(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match=r"multiples of 4 \(pad or crop first\), got 18x16"):
        conv.encode(torch.rand(2, 1, 18, 16))
    for model in (titok, multiscale):
        with pytest.raises(ValueError, match=r"takes 16x16 images \(resize or crop first\), got 32x32"):
            model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected a latent \[B, 8, 1, 6\], got shape \(2, 8, 1, 5\)"):
        titok.decode_latent(torch.randn(2, 8, 1, 5))
    with pytest.raises(ValueError, match="this tokenizer has 1 to 2 codebooks, not 3"):
        conv.set_num_codebooks(3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"downsample": 2}, "downsample must be 4, 8 or 16 for the conv architecture, got 2"),
    ({"image_size": 18}, "image_size must be a positive multiple of downsample=4, got 18"),
    ({"architecture": "titok", "downsample": 5}, "image_size must be a positive multiple of downsample=5"),
    ({"architecture": "titok", "transformer_dim": 30, "transformer_heads": 4},
     "transformer_dim must be a positive multiple of transformer_heads=4, got 30"),
    ({"architecture": "multiscale", "scales": (1, 2, 8)}, r"the last scale must be image_size / downsample = 4"),
    ({"architecture": "multiscale", "scales": (2, 1, 4)}, "scales must be increasing positive sides"),
    ({"channels": 0}, "channels must be >= 1, got 0"),
    ({"latent_dim": 0}, "latent_dim must be >= 1, got 0"),
])
def test_config_rejects_invalid_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny(overrides.pop("architecture", "conv"), **overrides)
