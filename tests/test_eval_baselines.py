"""Delay estimation/removal and the classic-codec baselines, on the bundled real speech clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf
import torch

from codec.audio.io import Audio
from codec.errors import CodecError
from codec.eval import baselines as bl
from codec.eval.alignment import align, estimate_delay
from codec.eval.baselines import Codec2Baseline, MP3Baseline, OpusBaseline, make_baselines, parse_spec

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.flac"))
AVAILABLE = bl.available_baselines()
needs_opus = pytest.mark.skipif(not AVAILABLE["opus"], reason="ffmpeg with libopus is not installed")
needs_mp3 = pytest.mark.skipif(not AVAILABLE["mp3"], reason="ffmpeg with libmp3lame is not installed")
needs_codec2 = pytest.mark.skipif(not AVAILABLE["codec2"], reason="c2enc/c2dec are not installed")


def load(path: Path) -> Audio:
    data, sr = sf.read(path, dtype="float32")
    return Audio(torch.from_numpy(data)[None], sr)


@pytest.fixture(scope="module")
def clips() -> list[Audio]:
    return [load(p) for p in SAMPLES]


def shifted(x: np.ndarray, lag: int, noise: float = 1e-3) -> np.ndarray:
    """deg[n + lag] = x[n] (same length, zero-filled) plus a little white noise."""
    y = np.zeros_like(x)
    if lag >= 0:
        y[lag:] = x[:len(x) - lag]
    else:
        y[:lag] = x[-lag:]
    return y + noise * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)


def lsd(ref: np.ndarray, deg: np.ndarray, sr: int, fmax: float) -> float:
    """Log-spectral distance (dB) up to ``fmax`` over frames within 40 dB of the loudest."""
    f, _, r = ss.stft(ref, sr, nperseg=512)
    _, _, d = ss.stft(deg, sr, nperseg=512)
    pr, pd = np.abs(r[f <= fmax]) ** 2 + 1e-10, np.abs(d[f <= fmax]) ** 2 + 1e-10
    active = pr.sum(0) > pr.sum(0).max() * 1e-4
    return float(np.mean(np.sqrt(np.mean((10 * np.log10(pr / pd)) ** 2, axis=0))[active]))


def frame_energy_db(x: np.ndarray, hop: int) -> np.ndarray:
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    return 10 * np.log10((frames ** 2).mean(1) + 1e-8)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


# ---------------------------------------------------------------- alignment

@pytest.mark.parametrize("lag", [37, 480, -120])
def test_delay_of_a_shifted_copy_is_exact_and_removed(clips, lag):
    x = clips[1].samples[0].numpy()
    y = shifted(x, lag)
    assert estimate_delay(x, y, 16000) == lag
    ref, deg, delay = align(x, y, 16000)
    assert delay == lag and len(ref) == len(deg) == len(x) - abs(lag)
    assert np.max(np.abs(ref - deg)) < 6e-3  # noise std 1e-3: identical up to the noise


def test_envelope_method_and_lag_bound(clips):
    x = clips[0].samples[0].numpy()
    assert abs(estimate_delay(x, shifted(x, 480), 16000, method="envelope") - 480) <= 16  # 1 ms
    assert abs(estimate_delay(x, shifted(x, 480), 16000, max_delay_seconds=0.01)) <= 160
    assert estimate_delay(x, np.zeros_like(x), 16000) == 0  # silence: no measurable delay
    with pytest.raises(ValueError):
        estimate_delay(x[None], x, 16000)


# ---------------------------------------------------------------- baselines

CASES = [pytest.param(OpusBaseline(12), marks=needs_opus), pytest.param(MP3Baseline(32), marks=needs_mp3),
         pytest.param(Codec2Baseline("3200"), marks=needs_codec2),
         pytest.param(Codec2Baseline("1300"), marks=needs_codec2),
         pytest.param(Codec2Baseline("700C"), marks=needs_codec2)]
# (low, high) accepted actual kbps / nominal: Opus CBR plus Ogg pages (~0.9 kbps on 3-4 s
# clips); MP3 CBR plus its LAME tag frame; Codec2 frames rounded up to whole bytes on disk.
RATE_RANGE = {"Opus 12 kbps": (1.0, 1.12), "MP3 32 kbps": (1.0, 1.08), "Codec2 3200": (1.0, 1.02),
              "Codec2 1300": (1.07, 1.1), "Codec2 700C": (1.14, 1.17)}


@pytest.mark.parametrize("baseline", CASES, ids=lambda b: b.label)
def test_baseline_codes_real_speech(clips, baseline):
    for audio in clips:
        x = audio.samples[0].numpy()
        coded = baseline.code(audio)
        y = coded.audio.samples[0].numpy()
        # fitted to the input: same rate, exactly the same length (codec frame padding cut)
        assert coded.audio.sample_rate == audio.sample_rate and coded.audio.samples.shape == (1, len(x))
        assert np.sqrt(np.mean(y ** 2)) > 0.2 * np.sqrt(np.mean(x ** 2))  # not silent
        assert coded.encode_seconds > 0 and coded.decode_seconds > 0
        low, high = RATE_RANGE[baseline.label]
        kbps = coded.num_bytes * 8 / audio.duration / 1000
        assert low * baseline.nominal_kbps <= kbps <= high * baseline.nominal_kbps, kbps
        if coded.payload_bytes is not None:  # Opus packets / bit-tight Codec2 frames
            payload_kbps = coded.payload_bytes * 8 / audio.duration / 1000
            assert baseline.nominal_kbps <= payload_kbps <= 1.03 * baseline.nominal_kbps
        ref, deg, delay = align(x, y, audio.sample_rate)
        if baseline.name == "codec2":  # a vocoder: phase is not kept, the loudness contour is
            assert 0.015 * 16000 <= delay < 0.05 * 16000  # measured 18-32 ms
            assert ncc(*(frame_energy_db(s, 320) - frame_energy_db(s, 320).mean() for s in (ref, deg))) > 0.8
        else:  # ffmpeg removes the encoder delay (Opus pre-skip, LAME tag); resampling: +-2 samples
            assert -2 <= delay <= 2
            assert ncc(ref, deg) > 0.5


def test_quality_rises_with_bitrate(clips):
    if not (AVAILABLE["opus"] and AVAILABLE["codec2"]):
        pytest.skip("ffmpeg with libopus and codec2 are needed")
    for audio in clips:
        x = audio.samples[0].numpy()

        def distance(baseline, fmax):
            ref, deg, _ = align(x, baseline.code(audio).audio.samples[0].numpy(), audio.sample_rate)
            return lsd(ref, deg, audio.sample_rate, fmax)

        opus = [distance(OpusBaseline(k), 8000) for k in (6, 12, 24)]
        assert opus[0] > opus[1] > opus[2], opus
        c2 = [distance(Codec2Baseline(m), 3800) for m in ("1300", "3200")]  # Codec2 is narrowband
        assert c2[0] > c2[1], c2


@needs_opus
def test_stereo_input_at_another_rate_is_downmixed_and_returned_at_its_rate(clips):
    mono = clips[2].samples
    stereo = Audio(torch.cat([mono, 0.5 * mono]), 16000)
    stereo = Audio(bl.resample(stereo.samples, 16000, 22050), 22050)  # Opus codes it at 24 kHz
    for baseline in (OpusBaseline(16), Codec2Baseline("3200")) if AVAILABLE["codec2"] else (OpusBaseline(16),):
        coded = baseline.code(stereo)
        assert coded.audio.sample_rate == 22050 and coded.audio.samples.shape == (1, stereo.num_samples)


@needs_opus
def test_tool_failure_is_one_sentence_with_the_tools_message(tmp_path):
    with pytest.raises(CodecError, match=r"^ffmpeg failed with exit code \d+: .*missing\.wav.*\.$"):
        bl._run(["ffmpeg", "-i", str(tmp_path / "missing.wav"), str(tmp_path / "out.wav")])


@needs_codec2
def test_temp_dirs_are_removed_and_a_missing_tool_is_reported(clips, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    Codec2Baseline("3200").code(clips[2])
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CodecError, match="c2enc was not found"):
        Codec2Baseline("3200").code(clips[2])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- specs

def test_specs_are_parsed():
    assert [b.label for b in parse_spec("opus")] == ["Opus 6 kbps", "Opus 12 kbps"]
    assert [b.label for b in parse_spec("codec2")] == ["Codec2 3200", "Codec2 1300"]
    assert [b.nominal_kbps for b in parse_spec("opus:6,12,16")] == [6, 12, 16]
    assert [b.nominal_kbps for b in parse_spec("codec2:3200,2400,1600,1300,700c")] == [3.2, 2.4, 1.6, 1.3, 0.7]
    assert [b.label for b in parse_spec(" MP3:16, 32 ")] == ["MP3 16 kbps", "MP3 32 kbps"]
    for spec, words in [("vorbis", "Unknown baseline 'vorbis'"), ("opus:", "malformed"),
                        ("opus:6,,12", "malformed"), ("opus:fast", "not a number"),
                        ("opus:3", "outside"), ("codec2:999", "Unknown Codec2 mode"), ("mp3:20", "not one of")]:
        with pytest.raises(CodecError, match=words):
            parse_spec(spec)


def test_make_baselines_dedupes_and_warns_when_tools_are_missing(tmp_path, monkeypatch):
    if all(AVAILABLE.values()):
        made, warnings = make_baselines(["opus", "codec2:1300", "opus:12,24", "codec2", "mp3:16"])
        assert [b.label for b in made] == ["Opus 6 kbps", "Opus 12 kbps", "Codec2 1300", "Opus 24 kbps",
                                           "Codec2 3200", "MP3 16 kbps"]
        assert warnings == [] and all(isinstance(b, bl.CodecSystem) for b in made)
    with pytest.raises(CodecError, match="Unknown baseline"):
        make_baselines(["opus", "aac"])
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tools at all
    made, warnings = make_baselines(["opus:6,12", "codec2", "mp3"])
    assert made == []
    assert warnings == ["ffmpeg with libopus was not found; the Opus baseline is skipped.",
                        "c2enc/c2dec (codec2) were not found; the Codec2 baseline is skipped.",
                        "ffmpeg with libmp3lame was not found; the MP3 baseline is skipped."]
