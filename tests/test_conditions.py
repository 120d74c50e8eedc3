"""Recording conditions for training crops (codec/data/conditions.py): each does what it says at the
level it is given, the draws are reproducible from the seed, and everything is off by default."""

import math
from dataclasses import replace

import pytest
import torch

from codec.config import config_from_dict
from codec.data.conditions import (ConditionsConfig, add_noise, apply_conditions, band_limit, colored_noise,
                                   reverberate, room_impulse)
from codec.data.config import DataConfig

SR = 16000


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tone_mix(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.sin(2 * math.pi * 1500 * t))[None]


def _db(x: torch.Tensor) -> float:
    return 10 * math.log10(x.pow(2).mean().item())


def test_noise_is_added_at_the_requested_snr_and_its_colour():
    x = _tone_mix()
    for tilt in (0.0, -1.0, -2.0):
        noise = colored_noise((1, SR), tilt, _generator())
        assert noise.pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)
        y = add_noise(x, noise, 20.0)
        assert _db(x) - _db(y - x) == pytest.approx(20.0, abs=0.01)
        power = torch.fft.rfft(noise[0]).abs().pow(2)
        low, high = power[100:400].mean().item(), power[3000:6000].mean().item()  # ~0.1-0.4 vs 3-6 kHz
        assert 10 * math.log10(low / high) == pytest.approx(-10 * tilt * math.log10(4500 / 250), abs=2.5)
    assert torch.equal(add_noise(torch.zeros(1, 100), colored_noise((1, 100), 0.0, _generator()), 10.0),
                       torch.zeros(1, 100))


def test_band_limit_removes_what_lies_above_the_cutoff_and_keeps_the_rest():
    x = colored_noise((1, 2 * SR), 0.0, _generator())
    y = band_limit(x, 3400.0, SR)
    assert y.shape == x.shape
    spectrum_x, spectrum_y = (torch.fft.rfft(v[0]).abs().pow(2) for v in (x, y))
    hz = torch.fft.rfftfreq(2 * SR, 1 / SR)
    passband = (hz > 300) & (hz < 3000)
    stopband = hz > 3800
    assert 10 * math.log10(spectrum_y[passband].sum() / spectrum_x[passband].sum()) > -0.5
    assert 10 * math.log10(spectrum_y[stopband].sum() / spectrum_x[stopband].sum()) < -25  # resampling filters: ~30 dB
    assert torch.equal(band_limit(x, 8000.0, SR), x)  # nothing above Nyquist to remove


def test_the_room_decays_by_60_db_over_its_rt60_and_keeps_the_level():
    impulse = room_impulse(0.5, 6.0, SR, _generator())
    assert impulse[0] == 1.0 and len(impulse) == SR // 2
    tail = impulse[1:]
    assert 10 * math.log10(tail.pow(2).sum().item()) == pytest.approx(-6.0, abs=1e-3)  # direct over tail: 6 dB
    early, late = tail[:800].pow(2).mean().item(), tail[3200:4000].pow(2).mean().item()  # 0-50 ms vs 200-250 ms
    assert 10 * math.log10(early / late) == pytest.approx(60 * 0.2 / 0.5, abs=3.0)  # 24 dB in 0.2 s
    x = _tone_mix()
    y = reverberate(x, impulse)
    assert y.shape == x.shape and _db(y) == pytest.approx(_db(x), abs=1e-3)
    assert not torch.allclose(y, x, atol=1e-3)


def test_conditions_follow_their_probabilities_and_the_seed():
    x = _tone_mix(0.5)
    always = ConditionsConfig(reverb_prob=1.0, noise_prob=1.0, band_limit_prob=1.0)
    a, b = (apply_conditions(x, always, SR, _generator(7)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, apply_conditions(x, always, SR, _generator(8)))
    never = ConditionsConfig(reverb_prob=0.0, noise_prob=0.0, band_limit_prob=1e-9)
    assert never.active and torch.equal(apply_conditions(x, never, SR, _generator(7)), x)
    # each condition takes its draws whether or not it applies: turning noise off changes only the noise
    with_noise = apply_conditions(x, always, SR, _generator(7))
    without = apply_conditions(x, replace(always, noise_prob=0.0), SR, _generator(7))
    assert _db(with_noise - without) < _db(x) - 9  # the SNR is at least 10 dB


def test_conditions_are_off_by_default_and_checked():
    config = config_from_dict(DataConfig, {"corpus": "folder"})
    assert config.conditions == ConditionsConfig() and not config.conditions.active
    partial = config_from_dict(DataConfig, {"corpus": "folder", "conditions": {"noise_prob": 0.3}})
    assert partial.conditions.noise_prob == 0.3 and partial.conditions.snr_db == (10.0, 40.0)
    for bad, message in (({"noise_prob": 1.5}, "noise_prob must be a probability"),
                         ({"cutoff_hz": [7000, 3400]}, "cutoff_hz must be two finite numbers"),
                         ({"rt60_seconds": [0, 0.5]}, "rt60_seconds must be two finite numbers"),
                         ({"snr_db": [10]}, "snr_db must have 2 items")):
        with pytest.raises(ValueError, match=message):
            config_from_dict(DataConfig, {"corpus": "folder", "conditions": bad})


def test_training_crops_take_the_conditions_after_the_gain(tmp_path):
    from codec.data.dataset import SegmentDataset
    from codec.data.manifests import prepare_manifests
    from tests.conftest import SAMPLES

    config = DataConfig(corpus="folder", data_dir=str(SAMPLES), valid_clips=1, gain_db=(-6.0, 6.0))
    train, _ = prepare_manifests(config, tmp_path)
    clean = SegmentDataset(train, SR, SR, config, train=True)
    noisy_config = replace(config, conditions=ConditionsConfig(noise_prob=1.0, snr_db=(20.0, 20.0)))
    noisy = SegmentDataset(train, SR, SR, noisy_config, train=True)
    for seed in (3, 4):
        x, y = clean[(0, seed)], noisy[(0, seed)]
        assert torch.equal(y, noisy[(0, seed)])  # the seed decides everything
        assert _db(x) - _db(y - x) == pytest.approx(20.0, abs=0.05)  # same crop and gain, plus the noise
    assert torch.equal(SegmentDataset(train, SR, SR, replace(config, conditions=ConditionsConfig()), train=True)[(0, 3)],
                       clean[(0, 3)])
    valid = SegmentDataset(train, SR, SR, noisy_config, train=False)
    assert torch.equal(valid[0], SegmentDataset(train, SR, SR, config, train=False)[0])  # validation stays clean
