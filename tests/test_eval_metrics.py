"""Evaluation metrics: each against its reference package called directly on the same real speech."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pesq
import pystoi
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from audiotools import AudioSignal
from audiotools.metrics.distance import SISDRLoss
from audiotools.metrics.spectral import MelSpectrogramLoss, MultiScaleSTFTLoss

from codec.errors import CodecError
from codec.eval import metrics as M

pytestmark = pytest.mark.filterwarnings(
    "ignore:stft_data changed shape:UserWarning", "ignore:`torch.jit.script` is deprecated:FutureWarning"
)

SR = 16000
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + noise * np.sqrt((x**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """A real 3.1 s, 16 kHz speech clip."""
    data, sr = sf.read(SAMPLES / "arctic_slt_a0009.flac", dtype="float32")
    assert sr == SR
    return data


@pytest.fixture(scope="module")
def degraded(clean) -> np.ndarray:
    """Low-passed at 4 kHz, plus white noise at 10 dB SNR."""
    return add_noise(AF.lowpass_biquad(torch.from_numpy(clean), SR, 4000.0).numpy(), 10.0)


@pytest.fixture(scope="module")
def scores(clean, degraded) -> dict[str, float | None]:
    return M.compute_metrics(clean, degraded, SR)


def test_pesq_matches_pesq_package(clean, degraded, scores):
    assert scores["pesq_wb"] == pytest.approx(pesq.pesq(SR, clean, degraded, "wb"), abs=1e-6)
    ref8, deg8 = (AF.resample(torch.from_numpy(x), SR, 8000).numpy() for x in (clean, degraded))
    assert scores["pesq_nb"] == pytest.approx(pesq.pesq(8000, ref8, deg8, "nb"), abs=1e-6)


def test_stoi_matches_pystoi(clean, degraded, scores):
    assert scores["stoi"] == pytest.approx(pystoi.stoi(clean, degraded, SR), abs=1e-6)
    assert scores["estoi"] == pytest.approx(pystoi.stoi(clean, degraded, SR, extended=True), abs=1e-6)


def test_si_sdr_matches_formula_and_audiotools(clean, degraded, scores):
    ref, deg = clean.astype(np.float64) - clean.mean(), degraded.astype(np.float64) - degraded.mean()
    target = (deg @ ref) / (ref @ ref) * ref
    expected = 10 * np.log10((target @ target) / ((deg - target) @ (deg - target)))
    assert scores["si_sdr"] == pytest.approx(expected, abs=1e-6)
    reference = -SISDRLoss()(AudioSignal(clean[None, None].copy(), SR), AudioSignal(degraded[None, None].copy(), SR))
    assert scores["si_sdr"] == pytest.approx(float(reference), abs=1e-3)


def test_spectral_distances_match_audiotools(clean, degraded, scores):
    x, y = AudioSignal(clean[None, None].copy(), SR), AudioSignal(degraded[None, None].copy(), SR)
    dac_mel = MelSpectrogramLoss(
        n_mels=[5, 10, 20, 40, 80, 160, 320], window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
        mel_fmin=[0.0] * 7, mel_fmax=[None] * 7, pow=1.0, clamp_eps=1e-5, mag_weight=0.0,
    )
    assert scores["mel_distance"] == pytest.approx(float(dac_mel(x, y)), rel=1e-4)
    assert scores["stft_distance"] == pytest.approx(float(MultiScaleSTFTLoss()(x, y)), rel=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # resemblyzer imports scipy.ndimage.morphology
def test_speaker_similarity_matches_resemblyzer(clean, degraded, scores, monkeypatch):
    vad = types.ModuleType("webrtcvad")  # resemblyzer imports webrtcvad (needs pkg_resources)
    vad.Vad = lambda mode=3: types.SimpleNamespace(is_speech=lambda buf, sample_rate: True)
    monkeypatch.setitem(sys.modules, "webrtcvad", vad)
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    encoder = VoiceEncoder("cpu", verbose=False)
    a, b = (encoder.embed_utterance(normalize_volume(x, -30, increase_only=True)) for x in (clean, degraded))
    expected = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert 0.3 < expected < 0.95
    assert scores["speaker_sim"] == pytest.approx(expected, abs=1e-4)


def test_f0_metrics_match_torchcrepe(clean, degraded, scores, monkeypatch):
    """Same network, frames and periodicity; torchcrepe's weighted_argmax weights the 9 bins by
    sigmoid(probability) and dithers, CREPE's local average (ours) by probability, so the
    voicing decisions agree exactly and the pitch within one 20-cent bin."""
    torchcrepe = pytest.importorskip("torchcrepe")
    monkeypatch.setattr(torchcrepe.convert, "dither", lambda cents: cents)
    cents, voiced = [], []
    for x in (clean, degraded):
        f0, periodicity = torchcrepe.predict(
            torch.from_numpy(x)[None], SR, 160, 50.0, 2006.0, "tiny", torchcrepe.decode.weighted_argmax,
            return_periodicity=True, batch_size=1024,
        )
        cents.append(1200 * torch.log2(f0[0] / 10.0))
        voiced.append(periodicity[0] > M.VOICING_THRESHOLD)
    both = voiced[0] & voiced[1]
    assert both.sum() > 100
    assert scores["vuv_error"] == pytest.approx(float((voiced[0] != voiced[1]).double().mean()), abs=1e-9)
    expected_rmse = float((cents[0] - cents[1])[both].double().pow(2).mean().sqrt())
    assert abs(scores["f0_rmse_cents"] - expected_rmse) < 10.0
    with torch.no_grad():
        ours, _ = M._crepe().analyse(torch.from_numpy(clean)[None, None])
    assert (ours[0] - cents[0])[voiced[0]].abs().max() < 20.0


def test_a_reference_is_pitch_analysed_once_per_process(clean, degraded, monkeypatch):
    """f0_metrics caches the reference's analysis by its samples: the same reference against two
    degraded clips is analysed once, with the scores of an uncached run; other samples are new."""
    ref, a, b = clean[:8000], degraded[:8000], degraded[8000:16000]
    expected = [M.f0_metrics(ref, deg, SR) for deg in (a, b)]
    M._REFERENCE_PITCH.clear()
    analysed = []
    real_pitch = M._pitch
    monkeypatch.setattr(M, "_pitch", lambda x, sr: (analysed.append(x.copy()), real_pitch(x, sr))[1])
    assert [M.f0_metrics(ref.copy(), deg, SR) for deg in (a, b)] == expected
    assert len(analysed) == 3 and np.array_equal(analysed[0], ref)  # the reference, then a and b
    M.f0_metrics(a, ref, SR)
    assert len(analysed) == 5
    monkeypatch.setattr(M, "REFERENCE_PITCH_CACHE", 1)  # the least recently used goes first
    M.f0_metrics(b, ref, SR)  # b in, ref and a out
    M.f0_metrics(ref, a, SR)
    assert len(analysed) == 9 and len(M._REFERENCE_PITCH) == 1


def test_dnsmos_matches_speechmos(degraded):
    if not M.dnsmos_available():
        pytest.skip("speechmos / onnxruntime are not installed")
    from speechmos import dnsmos

    assert np.abs(degraded).max() < 1.0
    expected = dnsmos.run(degraded, SR)
    ours = M.dnsmos(degraded, SR)
    for key in ("sig", "bak", "ovrl", "p808"):
        assert ours[key] == pytest.approx(float(expected[f"{key}_mos"]), abs=1e-5)


def test_identical_signals_score_best(clean):
    s = M.compute_metrics(clean, clean.copy(), SR)
    assert s["pesq_wb"] > 4.6 and s["pesq_nb"] > 4.5
    assert s["stoi"] > 0.999 and s["estoi"] > 0.999
    assert s["si_sdr"] > 90
    assert s["mel_distance"] == 0 and s["stft_distance"] == 0
    assert s["speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    assert s["f0_rmse_cents"] == 0 and s["vuv_error"] == 0


def test_more_noise_scores_worse(clean):
    runs = [M.compute_metrics(clean, add_noise(clean, snr), SR) for snr in (20.0, 10.0, 0.0)]
    for metric in M.METRICS:
        if metric.name == "dnsmos_sig" or runs[0][metric.name] is None:  # SIG hardly moves with white noise
            continue
        values = [r[metric.name] for r in runs]
        ordered = values[::-1] if metric.higher_is_better else values
        assert ordered == sorted(ordered), f"{metric.name}: {values}"
        assert ordered[0] != ordered[-1], f"{metric.name}: {values}"
    assert runs[0]["si_sdr"] == pytest.approx(20.0, abs=0.1)


def test_too_short_or_silent_clips_give_none(clean):
    speech = clean[8000:]  # starts inside an utterance
    noisy = add_noise(speech, 10.0)
    n_pesq, n_stoi = int(M.MIN_SECONDS_PESQ * SR), int(M.MIN_SECONDS_STOI * SR)
    assert M.pesq_wb(speech[: n_pesq - 1], noisy[: n_pesq - 1], SR) is None
    assert M.pesq_nb(speech[: n_pesq - 1], noisy[: n_pesq - 1], SR) is None
    assert M.pesq_wb(speech[:n_pesq], noisy[:n_pesq], SR) is not None
    assert M.stoi(speech[: n_stoi - 1], noisy[: n_stoi - 1], SR) is None
    assert M.stoi(speech[:SR], noisy[:SR], SR, extended=True) is not None
    assert M.mel_distance(speech[:1000], noisy[:1000], SR) is None
    assert M.stft_distance(speech[:1000], noisy[:1000]) is None
    assert M.dnsmos(noisy[: SR // 2], SR) is None

    burst = np.zeros(SR, dtype=np.float32)  # 1 s, only 0.1 s of it speech: too few frames for STOI
    burst[:1600] = speech[:1600]
    assert M.stoi(burst, add_noise(burst, 10.0), SR) is None
    silence = np.zeros(SR, dtype=np.float32)
    assert M.pesq_wb(silence, noisy[:SR], SR) is None  # no utterance in the reference
    assert M.pesq_wb(speech[:SR], silence, SR) is None  # degraded is digital silence

    short = M.compute_metrics(speech[:3200], noisy[:3200], SR)  # 0.2 s
    assert short["pesq_wb"] is None and short["stoi"] is None and short["dnsmos_ovrl"] is None
    assert short["si_sdr"] > 5 and short["mel_distance"] > 0 and short["speaker_sim"] < 1


def test_other_sample_rates_resample(clean, degraded, scores):
    up = [AF.resample(torch.from_numpy(x), SR, 24000).numpy() for x in (clean, degraded)]
    assert M.pesq_wb(*up, 24000) == pytest.approx(scores["pesq_wb"], abs=0.05)
    assert M.pesq_nb(*up, 24000) == pytest.approx(scores["pesq_nb"], abs=0.05)
    assert M.stoi(*up, 24000) == pytest.approx(scores["stoi"], abs=0.01)
    assert M.speaker_similarity(*up, 24000) == pytest.approx(scores["speaker_sim"], abs=0.01)


def test_compute_metrics_selection_and_input_checks(clean, degraded, scores):
    assert list(scores) == [m.name for m in M.METRICS]
    assert len(M.METRIC_NAMES) == len(M.METRICS)
    some = M.compute_metrics(torch.from_numpy(clean), torch.from_numpy(degraded)[None], SR, {"si_sdr", "stoi"})
    assert some == {"stoi": scores["stoi"], "si_sdr": pytest.approx(scores["si_sdr"], abs=1e-9)}
    with pytest.raises(CodecError, match="unknown metric.*nope"):
        M.compute_metrics(clean, degraded, SR, {"nope"})
    with pytest.raises(CodecError, match="differ in length"):
        M.compute_metrics(clean, degraded[:-1], SR, {"si_sdr"})
    with pytest.raises(CodecError, match="mono"):
        M.si_sdr(np.stack([clean, clean]), np.stack([degraded, degraded]))
