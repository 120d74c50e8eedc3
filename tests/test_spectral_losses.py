"""Spectral and time-domain losses: equality with audiotools' references on real speech, and known values."""

from __future__ import annotations

from pathlib import Path

import librosa
import pytest
import soundfile as sf
import torch
import torchaudio
from audiotools import AudioSignal
from audiotools.metrics.spectral import MelSpectrogramLoss, MultiScaleSTFTLoss

from codec.losses.spectral import (
    ComplexLossConfig,
    ComplexSTFTLoss,
    MelLossConfig,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    PhaseLoss,
    PhaseLossConfig,
    SISDRLoss,
    STFTLossConfig,
    mel_distance,
    si_sdr,
    spectral_convergence,
    time_l1_loss,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:stft_data changed shape:UserWarning", "ignore:`torch.jit.script` is deprecated:FutureWarning"
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SR = 16000


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    """Two 0.75 s real speech clips as [B=2, C=1, T]."""
    clips = []
    for name in ("arctic_slt_a0009.flac", "arctic_awb_a0007.flac"):
        data, sr = sf.read(SAMPLES / name, dtype="float32")
        assert sr == SR
        clips.append(torch.from_numpy(data[4000:16000]))
    return torch.stack(clips)[:, None]


def add_noise(x: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """x plus white noise at `snr_db` per channel."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    gain = (x.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True) / 10 ** (snr_db / 10)).sqrt()
    return x + gain * noise


def degrade(x: torch.Tensor) -> torch.Tensor:
    """Low-pass at 3 kHz plus noise at 20 dB SNR."""
    return add_noise(torchaudio.functional.lowpass_biquad(x, SR, 3000.0), 20.0)


def reference(loss: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(loss(AudioSignal(pred.clone(), SR), AudioSignal(target.clone(), SR)))


def test_mel_loss_matches_audiotools_dac_setting(clean):
    pred = degrade(clean)
    ours = MultiScaleMelLoss(SR, MelLossConfig())(pred, clean)
    cfg = MelLossConfig()
    ref = MelSpectrogramLoss(
        n_mels=list(cfg.n_mels), window_lengths=list(cfg.window_lengths), mag_weight=0.0, log_weight=1.0,
        pow=1.0, clamp_eps=1e-5, mel_fmin=[0.0] * 7, mel_fmax=[None] * 7,
    )
    expected = reference(ref, pred, clean)
    assert expected > 1.0
    assert float(ours) == pytest.approx(expected, rel=1e-4)
    assert float(mel_distance(pred, clean, SR)) == pytest.approx(expected, rel=1e-4)


def test_mel_loss_matches_audiotools_defaults_with_stereo(clean):
    target = torch.cat([clean, clean.flip(-1)], dim=1)  # [2, 2, T]: channels fold into the batch
    pred = degrade(target)
    cfg = MelLossConfig(window_lengths=(2048, 512), n_mels=(150, 80), mag_weight=1.0, log_weight=1.0, pow=2.0)
    ours = MultiScaleMelLoss(SR, cfg)(pred, target)
    assert float(ours) == pytest.approx(reference(MelSpectrogramLoss(), pred, target), rel=1e-4)


def test_mel_l2_term_is_mse_of_log_mels(clean):
    pred = degrade(clean)
    cfg = MelLossConfig(window_lengths=(512,), n_mels=(64,), log_weight=0.0, l2_weight=1.0)
    loss = MultiScaleMelLoss(SR, cfg)
    mel_p, mel_t = loss.mel_spectrograms(pred[:, 0])[0], loss.mel_spectrograms(clean[:, 0])[0]
    expected = (mel_p.clamp(min=1e-5).log10() - mel_t.clamp(min=1e-5).log10()).pow(2).mean()
    assert float(loss(pred, clean)) == pytest.approx(float(expected), rel=1e-6)
    assert float(expected) > 0.01


def test_stft_loss_matches_audiotools(clean):
    pred = degrade(clean)
    cfg = STFTLossConfig(
        fft_sizes=(2048, 512), hop_sizes=(512, 128), win_lengths=(2048, 512),
        sc_weight=0.0, log_weight=1.0, mag_weight=1.0, pow=2.0,
    )
    ours = MultiResolutionSTFTLoss(cfg)(pred, clean)
    expected = reference(MultiScaleSTFTLoss(window_lengths=[2048, 512]), pred, clean)
    assert float(ours) == pytest.approx(expected, rel=1e-4)


def test_spectral_convergence_direct_formula(clean):
    pred = degrade(clean)
    cfg = STFTLossConfig(fft_sizes=(1024,), hop_sizes=(120,), win_lengths=(600,), sc_weight=1.0, log_weight=0.0)
    ours = MultiResolutionSTFTLoss(cfg)(pred, clean)
    window = torch.nn.functional.pad(torch.hann_window(600, dtype=torch.float64), (212, 212))  # centred in 1024
    per_item = []
    for p, t in zip(pred[:, 0].double(), clean[:, 0].double()):
        sp, st = (torch.stft(x, 1024, 120, window=window, return_complex=True).abs() for x in (p, t))
        per_item.append(torch.linalg.norm(st - sp) / torch.linalg.norm(st))
    assert float(ours) == pytest.approx(float(torch.stack(per_item).mean()), rel=1e-4)
    assert float(spectral_convergence(torch.ones(1, 2, 2), torch.full((1, 2, 2), 2.0))) == pytest.approx(0.5)


def test_filterbank_and_window_match_librosa_and_scipy():
    import scipy.signal

    loss = MultiScaleMelLoss(SR, MelLossConfig(window_lengths=(512, 2048), n_mels=(80, 320)))
    for i, (win, n_mels) in enumerate([(512, 80), (2048, 320)]):
        expected = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=win, n_mels=n_mels))
        # torchaudio builds the filters in float32, librosa in float64: they agree to ~1.5e-5 of the peak.
        torch.testing.assert_close(getattr(loss, f"fbank_{i}"), expected, rtol=0, atol=2e-5 * float(expected.max()))
        hann = torch.from_numpy(scipy.signal.get_window("hann", win)).float()
        torch.testing.assert_close(getattr(loss, f"window_{i}"), hann)
    assert loss.state_dict() == {}  # buffers are recomputed, never checkpointed


def all_losses() -> dict[str, torch.nn.Module]:
    return {
        "mel": MultiScaleMelLoss(SR, MelLossConfig(l2_weight=1.0, mag_weight=1.0)),
        "stft": MultiResolutionSTFTLoss(STFTLossConfig(mag_weight=1.0)),
        "l1": time_l1_loss,
        "phase": PhaseLoss(SR),
        "complex": ComplexSTFTLoss(SR),
    }


def test_zero_for_identical_and_growing_with_degradation(clean):
    for name, loss in all_losses().items():
        assert float(loss(clean, clean.clone())) == pytest.approx(0.0, abs=1e-7), name
        values = [float(loss(add_noise(clean, snr), clean)) for snr in (30.0, 20.0, 10.0, 0.0)]
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)
        assert values[0] > 0, name


def test_gradients_reach_pred(clean):
    for name, loss in [*all_losses().items(), ("sisdr", SISDRLoss())]:
        pred = add_noise(clean, 10.0).requires_grad_(True)
        loss(pred, clean).backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all(), name
        assert pred.grad.abs().sum() > 0, name


def test_phase_loss_sees_phase_only(clean):
    loss = PhaseLoss(SR)
    assert float(loss(0.3 * clean, clean)) == pytest.approx(0.0, abs=1e-6)  # gain is not phase
    # polarity: every bin's phase is off by pi (1 - cos = 2); its differences across bins and frames are not
    assert float(loss(-clean, clean)) == pytest.approx(2.0, abs=1e-5)
    # a delay of d samples turns bin k's phase by 2 pi k d / n_fft: more error the longer the delay
    delayed = [float(loss(torch.roll(clean, d, -1), clean)) for d in (1, 3, 8)]
    assert 0 < delayed[0] < delayed[1] < delayed[2] < 2, delayed
    # a prediction that is silent where the target speaks (no phase there) still gives finite gradients
    pred = clean.clone()
    pred[..., 2000:6000] = 0
    pred.requires_grad_(True)
    loss(pred, clean).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # the gradient turns phases and never scales magnitudes: a gain on a wrong prediction gets none
    gain = torch.ones((), requires_grad=True)
    loss(gain * add_noise(clean, 5.0), clean).backward()
    assert abs(float(gain.grad)) < 1e-6
    with pytest.raises(ValueError, match="0 < hop <= n_fft"):
        PhaseLossConfig(n_fft=256, hop=512)


def test_phase_loss_views_and_band(clean):
    differences = PhaseLoss(SR, PhaseLossConfig(views=("group_delay", "frequency")))
    # without the phase itself, a constant phase turn (polarity) costs nothing
    assert float(differences(-clean, clean)) == pytest.approx(0.0, abs=1e-5)
    # a smooth all-pass filter (group delay within +-2 ms) changes the phase far more than its differences
    spectrum = torch.fft.rfft(clean.double())
    group_delay = 2e-3 * torch.sin(torch.linspace(0, 3 * torch.pi, spectrum.shape[-1], dtype=torch.float64))
    turn = -torch.cumsum(group_delay, 0) * 2 * torch.pi * SR / (2 * (spectrum.shape[-1] - 1))
    all_passed = torch.fft.irfft(spectrum * torch.exp(1j * turn), n=clean.shape[-1]).float()
    assert float(differences(all_passed, clean)) < 0.01 * float(PhaseLoss(SR)(all_passed, clean))
    # bins above fmax are not compared: noise above 3 kHz leaves the 0-1 kHz loss (almost) at 0
    noise = add_noise(clean, 0.0) - clean
    high_noise = clean + torchaudio.functional.highpass_biquad(noise, SR, 3000.0)
    low_noise = clean + torchaudio.functional.lowpass_biquad(noise, SR, 800.0)
    low_band = PhaseLoss(SR, PhaseLossConfig(fmax=1000.0))
    assert float(low_band(high_noise, clean)) < 0.1 * float(PhaseLoss(SR)(high_noise, clean))
    assert float(low_band(high_noise, clean)) < 0.1 * float(low_band(low_noise, clean))
    for bad, message in [({"views": ("pitch",)}, "views must be distinct names"),
                         ({"views": ()}, "views must be distinct names"),
                         ({"views": ("phase", "phase")}, "views must be distinct names"),
                         ({"fmax": 0.0}, "fmax > 0")]:
        with pytest.raises(ValueError, match=message):
            PhaseLossConfig(**bad)


def test_complex_loss_sees_phase_and_level_below_fmax(clean):
    loss = ComplexSTFTLoss(SR)  # 0 ... 1 kHz
    # a gain g scales the compressed spectrum by g ** 0.3; silence leaves the whole target; polarity doubles it
    assert float(loss(0.5 * clean, clean)) == pytest.approx((1 - 0.5**0.3) ** 2, rel=1e-3)
    assert float(loss(torch.zeros_like(clean), clean)) == pytest.approx(1.0, abs=1e-3)
    assert float(loss(-clean, clean)) == pytest.approx(4.0, rel=1e-5)
    delayed = [float(loss(torch.roll(clean, d, -1), clean)) for d in (1, 4, 16)]
    assert 0 < delayed[0] < delayed[1] < delayed[2], delayed
    # what happens above fmax is not compared (a 3 kHz tone, faded in and out so that it leaks no lower)
    t = torch.arange(clean.shape[-1]) / SR
    with_tone = clean + 0.1 * torch.hann_window(t.shape[0], periodic=False) * torch.sin(2 * torch.pi * 3000.0 * t)
    assert float(loss(with_tone, clean)) < 1e-5
    assert float(ComplexSTFTLoss(SR, ComplexLossConfig(fmax=4000.0))(with_tone, clean)) > 0.05
    # silence where the target speaks: finite gradients
    pred = clean.clone()
    pred[..., 2000:6000] = 0
    pred.requires_grad_(True)
    loss(pred, clean).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    for bad in ({"n_fft": 256, "hop": 512}, {"compress": 0.0}, {"fmax": -1.0}):
        with pytest.raises(ValueError, match="complex loss needs"):
            ComplexLossConfig(**bad)


def test_si_sdr_known_values(clean):
    assert (si_sdr(0.5 * clean, clean) > 60).all()
    for snr in (0.0, 10.0, 20.0):
        noisy = add_noise(clean, snr, seed=3)
        torch.testing.assert_close(si_sdr(noisy, clean), torch.full((2,), snr), atol=0.5, rtol=0)
    noisy = add_noise(clean, 10.0)
    torch.testing.assert_close(si_sdr(3.0 * noisy + 0.1, clean), si_sdr(noisy, clean), atol=1e-3, rtol=0)
    assert float(SISDRLoss()(noisy, clean)) == pytest.approx(-float(si_sdr(noisy, clean).mean()))


def test_si_sdr_matches_dac():
    from dac.nn.loss import SISDRLoss as DacSISDRLoss

    gen = torch.Generator().manual_seed(1)
    target = torch.randn(3, 1, 4000, generator=gen)
    pred = 0.7 * target + 0.3 * torch.randn(3, 1, 4000, generator=gen)
    expected = -DacSISDRLoss(reduction="none")(target, pred)  # DAC takes (reference, estimate), returns -SDR
    torch.testing.assert_close(si_sdr(pred, target), expected.flatten(), rtol=1e-4, atol=1e-4)


def test_validation():
    with pytest.raises(ValueError):
        MelLossConfig(window_lengths=(512, 1024), n_mels=(80,))
    with pytest.raises(ValueError):
        STFTLossConfig(fft_sizes=(512,), hop_sizes=(128,), win_lengths=(1024,))
    with pytest.raises(ValueError):
        MultiScaleMelLoss(SR, MelLossConfig(fmax=12000.0))
    with pytest.raises(ValueError):
        time_l1_loss(torch.zeros(1, 1, 10), torch.zeros(1, 10))
    assert MelLossConfig(window_lengths=[64], n_mels=[8]).window_lengths == (64,)  # lists from JSON
