"""Discriminators (MS-STFT, MPD, MRD) and the adversarial / feature-matching losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch import nn

from codec.config import config_from_dict, config_to_dict
from codec.discriminators import Discriminator, DiscriminatorConfig, DiscriminatorOutput
from codec.losses.adversarial import discriminator_loss, feature_matching_loss, generator_loss

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TINY = dict(msstft_filters=4, mpd_widths=(4, 8, 8), mrd_filters=4)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def copy_params(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters in registration order (weight-norm g before v in both implementations)."""
    src_params, dst_params = list(src.parameters()), list(dst.parameters())
    assert len(src_params) == len(dst_params)
    with torch.no_grad():
        for a, b in zip(src_params, dst_params):
            assert a.shape == b.shape
            b.copy_(a)


# --- discriminators ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind, n_features", [("msstft", 5), ("mpd", 3), ("mrd", 25)])
def test_random_lengths_shapes_and_gradients(kind: str, n_features: int) -> None:
    config = DiscriminatorConfig(kinds=(kind,), **TINY)
    torch.manual_seed(0)
    disc = Discriminator(config)
    gen = torch.Generator().manual_seed(0)
    for batch, length in [(1, 1000), (3, 1237), (2, 4097), (1, 20000)]:
        x = torch.randn(batch, 1, length, generator=gen).requires_grad_()
        outs = disc(x)
        assert len(outs) == config.num_outputs
        for i, out in enumerate(outs):
            assert out.logits.shape[:2] == (batch, 1) and torch.isfinite(out.logits).all()
            assert len(out.features) == n_features and all(f.shape[0] == batch for f in out.features)
            if kind == "msstft":  # uncentred STFT frames, frequency strided by 2 three times
                n_fft = config.msstft_n_ffts[i]
                frames = (max(length, n_fft) - n_fft) // (n_fft // 4) + 1
                assert out.logits.shape[2:] == (frames, n_fft // 16 + 1)
            elif kind == "mpd":  # folded into [ceil(T / p), p], then 2 stride-3 convs
                p = config.mpd_periods[i]
                assert out.logits.shape[2:] == (math.ceil(math.ceil(math.ceil(length / p) / 3) / 3), p)
            else:  # ceil(T / hop) frames, each band's bins strided by 2 three times
                n_fft = config.mrd_n_ffts[i]
                bins = n_fft // 2 + 1
                width = sum(math.ceil((int(hi * bins) - int(lo * bins)) / 8) for lo, hi in config.mrd_bands)
                assert out.logits.shape[2:] == (math.ceil(length / (n_fft // 4)), width)
        sum(out.logits.mean() for out in outs).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_combined_multichannel_discriminator() -> None:
    config = DiscriminatorConfig(kinds=("mrd", "msstft", "mpd"), channels=2, **TINY)
    torch.manual_seed(0)
    disc = Discriminator(config)
    x = torch.randn(2, 2, 3001, generator=torch.Generator().manual_seed(1))
    outs = disc(x)
    assert len(outs) == config.num_outputs == 3 + 5 + 5
    assert all(out.logits.shape[:2] == (2, 1) for out in outs)
    swapped = disc(x.flip(1))  # channels are conv inputs, not folded into the batch: order matters
    assert not torch.allclose(outs[0].logits, swapped[0].logits)
    with pytest.raises(ValueError, match=r"\[B, 2, T\]"):
        disc(x[:, :1])


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")
@pytest.mark.parametrize("channels, filters, n_ffts", [(1, 32, (1024, 2048, 512, 256, 128)), (2, 4, (256, 128))])
def test_msstft_matches_encodec(channels: int, filters: int, n_ffts: tuple[int, ...]) -> None:
    msstftd = pytest.importorskip("encodec.msstftd")
    reference = msstftd.MultiScaleSTFTDiscriminator(
        filters=filters, in_channels=channels, n_ffts=list(n_ffts),
        hop_lengths=[n // 4 for n in n_ffts], win_lengths=list(n_ffts),
    )
    ours = Discriminator(DiscriminatorConfig(msstft_filters=filters, msstft_n_ffts=n_ffts, channels=channels))
    assert n_params(ours) == n_params(reference)
    if (channels, filters) == (1, 32):
        assert n_params(ours) == 472_330
    copy_params(reference, ours)
    x = torch.randn(2, channels, 6000, generator=torch.Generator().manual_seed(0))
    ref_logits, ref_fmaps = reference(x)
    outs = ours(x)
    for out, logits, fmap in zip(outs, ref_logits, ref_fmaps, strict=True):
        torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
        for a, b in zip(out.features, fmap, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")
def test_mpd_mrd_match_dac() -> None:
    dac_disc = pytest.importorskip("dac.model.discriminator")
    with torch.device("meta"):  # full size, no memory or init cost: MPD (2, 3, 5, 7, 11) + MRD (2048, 1024, 512)
        full_reference, full_ours = dac_disc.Discriminator(), Discriminator(DiscriminatorConfig(kinds=("mpd", "mrd")))
    assert n_params(full_ours) == n_params(full_reference) == 42_519_760
    torch.manual_seed(0)
    reference = dac_disc.Discriminator(periods=[3], fft_sizes=[2048, 1024, 512])
    ours = Discriminator(DiscriminatorConfig(kinds=("mpd", "mrd"), mpd_periods=(3,), normalize_input=True))
    copy_params(reference, ours)
    # 4001 is no multiple of 3 (DAC pads a whole extra period otherwise)
    x = 0.3 * torch.randn(1, 1, 4001, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_fmaps, outs = reference(x), ours(x)
    for out, fmap in zip(outs, ref_fmaps, strict=True):  # DAC: features then logits, in one list
        torch.testing.assert_close(out.logits, fmap[-1], rtol=1e-4, atol=1e-5)
        for a, b in zip(out.features, fmap[:-1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_validation() -> None:
    config = DiscriminatorConfig(kinds=("mpd", "mrd"), mrd_bands=((0.0, 0.5), (0.5, 1.0)), normalize_input=True)
    data = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(DiscriminatorConfig, data) == config
    assert DiscriminatorConfig().num_outputs == 5 and config.num_outputs == 8
    bad = [
        dict(kinds=()),
        dict(kinds=("msd",)),
        dict(kinds=("mpd", "mpd")),
        dict(channels=0),
        dict(msstft_n_ffts=(1022,)),
        dict(mpd_periods=(0,)),
        dict(mpd_widths=()),
        dict(mrd_bands=((0.5, 0.2),)),
        dict(kinds=("mrd",), mrd_n_ffts=(64,), mrd_bands=((0.0, 0.01), (0.01, 1.0))),  # empty band
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            DiscriminatorConfig(**kwargs)
    with pytest.raises(ValueError, match="kinds"):
        config_from_dict(DiscriminatorConfig, {"kinds": ["gan"]})


# --- losses -----------------------------------------------------------------------------------


def output(logits: list[float], *features: list[float]) -> DiscriminatorOutput:
    return DiscriminatorOutput(torch.tensor(logits).view(1, 1, -1), [torch.tensor(f).view(1, 1, -1) for f in features])


def test_adversarial_loss_values() -> None:
    real = [output([0.5, 3.0]), output([2.0])]
    fake = [output([-2.0, 0.0]), output([0.5])]
    # hinge: ((0.5 + 0) / 2 + (0 + 1) / 2 + 0 + 1.5) / 2 sub-discriminators
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(1.125)
    # lsgan: ((0.25 + 4) / 2 + (4 + 0) / 2 + 1 + 0.25) / 2
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(2.6875)
    assert generator_loss(fake, "hinge").item() == pytest.approx(((3 + 1) / 2 + 0.5) / 2)
    assert generator_loss(fake, "lsgan").item() == pytest.approx(((9 + 1) / 2 + 0.25) / 2)
    # a confident, correct discriminator has zero hinge loss; the generator pays 1 + margin
    sure_real, sure_fake = [output([1.0, 4.0])], [output([-1.0, -3.0])]
    assert discriminator_loss(sure_real, sure_fake, "hinge").item() == 0.0
    assert generator_loss(sure_fake, "hinge").item() == pytest.approx(3.0)
    assert generator_loss([output([1.0, 1.0])], "lsgan").item() == 0.0
    with pytest.raises(ValueError):
        discriminator_loss(real, fake, "wgan")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        discriminator_loss(real, fake[:1])


def test_feature_matching() -> None:
    real = [output([0.0], [1.0, -1.0, 2.0, -2.0]), output([0.0], [4.0, 4.0])]
    fake = [output([0.0], [1.0, 1.0, 2.0, 0.0]), output([0.0], [0.0, 4.0])]
    # map 1: L1 1 / mean|real| 1.5; map 2: L1 2 / mean|real| 4
    assert feature_matching_loss(real, fake).item() == pytest.approx((1 / 1.5 + 2 / 4) / 2)
    assert feature_matching_loss(real, fake, relative=False).item() == pytest.approx((1 + 2) / 2)
    assert feature_matching_loss(real, real).item() == 0.0

    torch.manual_seed(0)
    disc = Discriminator(DiscriminatorConfig(kinds=("msstft", "mpd"), **TINY))
    x, y = torch.randn(2, 2, 1, 3000, generator=torch.Generator().manual_seed(0)).unbind(1)
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    out_real, out_fake = disc(x), disc(y)
    scaled = lambda outs, s: [DiscriminatorOutput(o.logits, [s * f for f in o.features]) for o in outs]  # noqa: E731
    loss = feature_matching_loss(out_real, out_fake)
    assert loss.item() > 0
    torch.testing.assert_close(feature_matching_loss(scaled(out_real, 7.0), scaled(out_fake, 7.0)), loss)
    absolute = feature_matching_loss(out_real, out_fake, relative=False)
    torch.testing.assert_close(feature_matching_loss(scaled(out_real, 7.0), scaled(out_fake, 7.0), False), 7 * absolute)
    loss.backward()  # gradients reach the generated audio only; the real features are detached
    assert y.grad is not None and y.grad.abs().sum() > 0 and x.grad is None
    zero = [output([0.0], [0.0, 0.0])]
    assert torch.isfinite(feature_matching_loss(zero, [output([0.0], [1.0, 0.0])]))
    assert feature_matching_loss(zero, zero).item() == 0.0


# --- learning ---------------------------------------------------------------------------------


def test_tiny_discriminator_separates_speech_from_noisy_speech() -> None:
    clips = [torch.from_numpy(sf.read(path, dtype="float32")[0]) for path in sorted(SAMPLES.glob("*.flac"))]
    gen = torch.Generator().manual_seed(0)

    def batch(n: int = 8, length: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """Real crops [n, 1, length] (clip RMS scaled to 0.1) and copies with white noise of that RMS (0 dB)."""
        crops = []
        for _ in range(n):
            clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
            start = int(torch.randint(len(clip) - length, (1,), generator=gen))
            crops.append(clip[start : start + length] / clip.pow(2).mean().sqrt() * 0.1)
        real = torch.stack(crops)[:, None]
        return real, real + 0.1 * torch.randn(real.shape, generator=gen)

    def mean_logit(outs: list[DiscriminatorOutput]) -> float:
        return sum(o.logits.mean().item() for o in outs) / len(outs)

    torch.manual_seed(0)
    config = DiscriminatorConfig(
        kinds=("msstft", "mpd", "mrd"), msstft_filters=8, msstft_n_ffts=(512, 128), mpd_periods=(2, 5),
        mpd_widths=(8, 16, 16), mrd_filters=8, mrd_n_ffts=(256,),
    )
    disc = Discriminator(config)
    optimizer = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.9))
    losses = []
    for _ in range(50):
        real, fake = batch()
        loss = discriminator_loss(disc(real), disc(fake), "hinge")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    with torch.no_grad():
        real, fake = batch(16)  # held-out crops
        out_real, out_fake = disc(real), disc(fake)
    assert mean_logit(out_real) > mean_logit(out_fake) + 0.5
    assert discriminator_loss(out_real, out_fake).item() < 0.5 * losses[0]
