"""Intrusive quality metrics of a degraded clip against its reference.

Both clips are mono ``[T]`` (numpy or torch), at one sample rate ``sr``, already time-aligned.
A metric that cannot score a clip (too short, no speech, optional package missing) returns
None rather than raising; the caller counts the skipped clips. Resampling, where a metric
needs a fixed rate, is ``torchaudio.functional.resample`` with its defaults (Hann-windowed
sinc, 6 zero crossings, rolloff 0.99); STOI resamples to 10 kHz itself (pystoi).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pesq as pesq_lib
import pystoi
import torch
import torchaudio.functional as AF

from codec.errors import CodecError
from codec.losses import spectral
from codec.losses.perceptual import GE2ESpeakerLoss, PitchLoss

# PESQ (P.862) refuses clips under 1/4 s (the pesq package's BufferTooShortError).
MIN_SECONDS_PESQ = 0.25
# STOI needs 30 frames (256 samples, hop 128 at 10 kHz) after pystoi drops frames more than
# 40 dB below the loudest: 30 frames span 4096 samples at 10 kHz, so at least 0.41 s of audio;
# a longer clip whose non-silent part is still too short is detected through pystoi's warning.
MIN_SECONDS_STOI = 0.41
# The mel and STFT distances' largest window (2048) needs more than 1024 samples (reflect padding).
MIN_SAMPLES_SPECTRAL = 1025
# speechmos tiles shorter clips up to DNSMOS's 9 s window; a clip under 1 s would mostly be repeats.
MIN_SECONDS_DNSMOS = 1.0

PESQ_WB_RATE, PESQ_NB_RATE, MODEL_RATE = 16000, 8000, 16000  # MODEL_RATE: GE2E, CREPE, DNSMOS
# audiotools' MultiScaleSTFTLoss defaults, the "stft" metric of DAC's evaluate script:
# windows 2048 and 512 (hop = window / 4), L1 of log10(|S|^2) plus L1 of |S|, summed.
STFT_DISTANCE = spectral.STFTLossConfig(
    fft_sizes=(2048, 512), hop_sizes=(512, 128), win_lengths=(2048, 512),
    sc_weight=0.0, log_weight=1.0, mag_weight=1.0, pow=2.0,
)
F0_HOP_MS = 10.0
# A frame is voiced when CREPE-tiny's periodicity (peak activation) exceeds this; on speech its
# periodicities cluster below 0.2 and above 0.7 (PitchLoss uses the same default).
VOICING_THRESHOLD = 0.5


@dataclass(frozen=True)
class Metric:
    """How to show one metric in tables and plots."""

    name: str
    label: str
    higher_is_better: bool


METRICS: tuple[Metric, ...] = (
    Metric("pesq_wb", "PESQ-WB", True),
    Metric("pesq_nb", "PESQ-NB", True),
    Metric("stoi", "STOI", True),
    Metric("estoi", "ESTOI", True),
    Metric("si_sdr", "SI-SDR (dB)", True),
    Metric("mel_distance", "Mel distance", False),
    Metric("stft_distance", "STFT distance", False),
    Metric("speaker_sim", "Speaker similarity", True),
    Metric("f0_rmse_cents", "F0 RMSE (cents)", False),
    Metric("vuv_error", "V/UV error", False),
    Metric("dnsmos_sig", "DNSMOS SIG", True),
    Metric("dnsmos_bak", "DNSMOS BAK", True),
    Metric("dnsmos_ovrl", "DNSMOS OVRL", True),
)
METRIC_NAMES = frozenset(m.name for m in METRICS)
# Word error rate needs a recogniser and a reference text, not just the two clips: ``codec.eval.runner``
# computes it (pocketsphinx, English; ``codec.eval.asr``), as a corpus rate, errors over reference words.
WER = Metric("wer", "WER (%)", False)
ALL_METRICS: tuple[Metric, ...] = METRICS + (WER,)  # everything ``codec eval`` can report


def _mono(x: Any) -> np.ndarray:
    """numpy/torch [T] (or [1, T], [1, 1, T]) -> float32 numpy [T]."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim > 1 and all(d == 1 for d in arr.shape[:-1]):
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.size == 0:
        raise CodecError(f"metrics need a non-empty mono clip shaped [time], got shape {arr.shape}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _pair(ref: Any, deg: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = _mono(ref), _mono(deg)
    if ref.shape != deg.shape:
        raise CodecError(f"reference and degraded clips differ in length ({ref.size} vs {deg.size} samples).")
    return ref, deg


def _resample(x: np.ndarray, sr: int, new_sr: int) -> np.ndarray:
    return x if sr == new_sr else AF.resample(torch.from_numpy(x), sr, new_sr).numpy()


def _pesq(ref: Any, deg: Any, sr: int, rate: int, mode: str) -> float | None:
    ref, deg = _pair(ref, deg)
    if ref.size < MIN_SECONDS_PESQ * sr:
        return None
    try:
        return float(pesq_lib.pesq(rate, _resample(ref, sr, rate), _resample(deg, sr, rate), mode))
    # ValueError: the C code's level alignment turns NaN when the degraded clip is digital silence.
    except (pesq_lib.BufferTooShortError, pesq_lib.NoUtterancesError, ValueError):
        return None


def pesq_wb(ref: Any, deg: Any, sr: int) -> float | None:
    """Wide-band PESQ (P.862.2, MOS-LQO about 1.0-4.64) at 16 kHz; None if too short or no speech."""
    return _pesq(ref, deg, sr, PESQ_WB_RATE, "wb")


def pesq_nb(ref: Any, deg: Any, sr: int) -> float | None:
    """Narrow-band PESQ (P.862.1, MOS-LQO about 1.0-4.55) at 8 kHz; None if too short or no speech."""
    return _pesq(ref, deg, sr, PESQ_NB_RATE, "nb")


def stoi(ref: Any, deg: Any, sr: int, extended: bool = False) -> float | None:
    """STOI (or extended STOI) via pystoi; None when there is too little non-silent audio."""
    ref, deg = _pair(ref, deg)
    if ref.size < MIN_SECONDS_STOI * sr:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Not enough STFT frames", category=RuntimeWarning)
        try:
            return float(pystoi.stoi(ref.astype(np.float64), deg.astype(np.float64), sr, extended=extended))
        except RuntimeWarning:
            return None


def _batch(*clips: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy [T] clips -> [N, 1, T] tensor."""
    return torch.from_numpy(np.stack(clips)).to(dtype)[:, None]


def si_sdr(ref: Any, deg: Any) -> float:
    """Scale-invariant SDR in dB (float64), ``codec.losses.spectral.si_sdr``."""
    ref, deg = _pair(ref, deg)
    return float(spectral.si_sdr(_batch(deg, dtype=torch.float64), _batch(ref, dtype=torch.float64))[0])


def mel_distance(ref: Any, deg: Any, sr: int) -> float | None:
    """DAC's 7-scale log-mel L1 distance (0 for identical clips); None under MIN_SAMPLES_SPECTRAL."""
    ref, deg = _pair(ref, deg)
    if ref.size < MIN_SAMPLES_SPECTRAL:
        return None
    return float(spectral.mel_distance(_batch(deg), _batch(ref), sr))


@functools.lru_cache(maxsize=1)
def _stft_loss() -> spectral.MultiResolutionSTFTLoss:
    return spectral.MultiResolutionSTFTLoss(STFT_DISTANCE).eval()


def stft_distance(ref: Any, deg: Any) -> float | None:
    """Multi-scale STFT distance with ``STFT_DISTANCE``; None under MIN_SAMPLES_SPECTRAL."""
    ref, deg = _pair(ref, deg)
    if ref.size < MIN_SAMPLES_SPECTRAL:
        return None
    with torch.no_grad():
        return float(_stft_loss()(_batch(deg), _batch(ref)))


@functools.lru_cache(maxsize=1)
def _ge2e() -> GE2ESpeakerLoss:
    return GE2ESpeakerLoss(MODEL_RATE).eval()


def speaker_similarity(ref: Any, deg: Any, sr: int) -> float:
    """Cosine similarity of resemblyzer's GE2E utterance embeddings (1 for identical clips)."""
    ref, deg = _pair(ref, deg)
    with torch.no_grad():
        emb = _ge2e().embed(_batch(_resample(ref, sr, MODEL_RATE), _resample(deg, sr, MODEL_RATE)))
    return float(torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0))


def speaker_embedding(audio: Any, sr: int) -> torch.Tensor:
    """GE2E utterance embedding [D] of one clip [T] of any length (compare with cosine similarity)."""
    x = torch.as_tensor(_resample(np.asarray(audio, dtype=np.float32), sr, MODEL_RATE))
    with torch.no_grad():
        return _ge2e().embed(x[None, None])[0]


@functools.lru_cache(maxsize=1)
def _crepe() -> PitchLoss:
    return PitchLoss(MODEL_RATE, "tiny", hop_ms=F0_HOP_MS, min_std=1e-10).eval()  # torchcrepe's floor


def _pitch(samples: np.ndarray, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE-tiny (cents [F], periodicity [F]) of one clip [T]."""
    with torch.no_grad():
        cents, periodicity = _crepe().analyse(_batch(_resample(samples, sr, MODEL_RATE)))
    return cents[0], periodicity[0]


_REFERENCE_PITCH: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()  # by samples' digest
REFERENCE_PITCH_CACHE = 64  # references whose pitch a process keeps (one reference meets every system)


def _reference_pitch(samples: np.ndarray, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_pitch`` of a reference, computed once per process for the same samples (an LRU cache of
    ``REFERENCE_PITCH_CACHE`` analyses, keyed by a digest: the samples themselves are not kept)."""
    key = (samples.dtype.str, samples.shape, sr, hashlib.blake2b(samples.tobytes(), digest_size=16).digest())
    if key in _REFERENCE_PITCH:
        _REFERENCE_PITCH.move_to_end(key)
    else:
        _REFERENCE_PITCH[key] = _pitch(samples, sr)
        while len(_REFERENCE_PITCH) > REFERENCE_PITCH_CACHE:
            _REFERENCE_PITCH.popitem(last=False)
    return _REFERENCE_PITCH[key]


def f0_metrics(ref: Any, deg: Any, sr: int) -> dict[str, float | None]:
    """CREPE-tiny pitch every 10 ms: F0 RMSE in cents over frames voiced in both clips (None if
    there are none) and the V/UV error, the fraction of frames whose voicing decisions differ.
    The reference's pitch is cached (``_reference_pitch``): it meets every system.
    """
    ref, deg = _pair(ref, deg)
    (ref_cents, ref_periodicity), (deg_cents, deg_periodicity) = _reference_pitch(ref, sr), _pitch(deg, sr)
    ref_voiced, deg_voiced = ref_periodicity > VOICING_THRESHOLD, deg_periodicity > VOICING_THRESHOLD  # [F]
    both = ref_voiced & deg_voiced
    diff = (ref_cents - deg_cents).double()[both]
    rmse = float(diff.pow(2).mean().sqrt()) if both.any() else None
    return {"f0_rmse_cents": rmse, "vuv_error": float((ref_voiced != deg_voiced).double().mean())}


@functools.lru_cache(maxsize=1)
def _dnsmos_model() -> Any:
    """speechmos' DNSMOS (the ONNX models ship in its wheel), or None when it cannot load."""
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf, NoSuchFile
        from speechmos import dnsmos as speechmos_dnsmos
    except ImportError:
        return None
    models = Path(speechmos_dnsmos.__file__).parent / "dnsmos_models"
    try:
        return speechmos_dnsmos.DNSMOS(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))
    except (Fail, InvalidProtobuf, NoSuchFile, OSError):
        return None


def dnsmos_available() -> bool:
    """Whether speechmos and onnxruntime are installed and the DNSMOS models load."""
    return _dnsmos_model() is not None


def dnsmos(deg: Any, sr: int) -> dict[str, float] | None:
    """Non-intrusive DNSMOS P.835 (sig, bak, ovrl) and P.808 (p808) MOS of ``deg`` at 16 kHz.

    Samples are clipped to [-1, 1] (speechmos' range). None when speechmos is unavailable or
    the clip is shorter than MIN_SECONDS_DNSMOS.
    """
    deg = _mono(deg)
    model = _dnsmos_model()
    if model is None or deg.size < MIN_SECONDS_DNSMOS * sr:
        return None
    scores = model(np.clip(_resample(deg, sr, MODEL_RATE), -1.0, 1.0), MODEL_RATE, False)
    return {key: float(scores[f"{key}_mos"]) for key in ("sig", "bak", "ovrl", "p808")}


def compute_metrics(ref: Any, deg: Any, sr: int, which: Collection[str] | None = None) -> dict[str, float | None]:
    """The metrics named in ``which`` (default: all of METRICS), keyed and ordered as METRICS."""
    wanted = METRIC_NAMES if which is None else frozenset(which)
    if unknown := sorted(wanted - METRIC_NAMES):
        raise CodecError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(m.name for m in METRICS)}.")
    ref, deg = _pair(ref, deg)
    single = {
        "pesq_wb": lambda: pesq_wb(ref, deg, sr),
        "pesq_nb": lambda: pesq_nb(ref, deg, sr),
        "stoi": lambda: stoi(ref, deg, sr),
        "estoi": lambda: stoi(ref, deg, sr, extended=True),
        "si_sdr": lambda: si_sdr(ref, deg),
        "mel_distance": lambda: mel_distance(ref, deg, sr),
        "stft_distance": lambda: stft_distance(ref, deg),
        "speaker_sim": lambda: speaker_similarity(ref, deg, sr),
    }
    out = {name: fn() for name, fn in single.items() if name in wanted}
    if wanted & {"f0_rmse_cents", "vuv_error"}:
        out.update(f0_metrics(ref, deg, sr))
    if wanted & {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}:
        scores = dnsmos(deg, sr) or {}
        out.update({f"dnsmos_{key}": scores.get(key) for key in ("sig", "bak", "ovrl")})
    return {m.name: out[m.name] for m in METRICS if m.name in wanted}
