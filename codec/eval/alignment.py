"""Delay estimation and removal between a reference clip and its coded version.

Codecs delay their output (encoder lookahead, resampler filters, frame buffering), and
intrusive metrics (SNR, PESQ, STOI, ...) compare sample by sample, so the delay must be
found and removed first.

Two cross-correlations are used, both by FFT and normalised per lag by the energies of
the two overlapping segments, so that a lag is not favoured just because it overlaps
more signal:

- the *waveform* correlation finds the exact lag of waveform-matching codecs (Opus, MP3,
  neural codecs); its peak is close to 1 for them;
- the *envelope* correlation (Hilbert magnitude, low-passed at 40 Hz) is used when the
  waveform peak is weak (below ``WAVEFORM_MIN_CORRELATION``), as for parametric vocoders
  such as Codec2 that keep the spectral envelope and pitch but not the phase, where the
  waveform correlation peaks at arbitrary pitch-period offsets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.signal as ss

WAVEFORM_MIN_CORRELATION = 0.5  # below this waveform peak, trust the envelope instead
_ENVELOPE_CUTOFF_HZ = 40.0

Method = Literal["auto", "waveform", "envelope"]


def _normalized_xcorr(reference: np.ndarray, degraded: np.ndarray,
                      max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(lags, correlation) for lags in [-max_lag, max_lag]; positive lag = degraded late.

    corr[lag] = sum_n ref[n] deg[n + lag] / sqrt(E_ref(overlap) * E_deg(overlap)).
    """
    n_ref, n_deg = len(reference), len(degraded)
    full = ss.correlate(degraded, reference, mode="full", method="fft")
    lags = ss.correlation_lags(n_deg, n_ref, mode="full")
    keep = np.abs(lags) <= max_lag
    full, lags = full[keep], lags[keep]
    # overlap for lag k: ref[a:b] with deg[a+k:b+k], a = max(0, -k), b = min(n_ref, n_deg - k)
    a = np.maximum(0, -lags)
    b = np.minimum(n_ref, n_deg - lags)
    cum_ref = np.concatenate([[0.0], np.cumsum(reference.astype(np.float64) ** 2)])
    cum_deg = np.concatenate([[0.0], np.cumsum(degraded.astype(np.float64) ** 2)])
    e_ref = cum_ref[b] - cum_ref[a]
    e_deg = cum_deg[b + lags] - cum_deg[a + lags]
    denom = np.sqrt(np.maximum(e_ref * e_deg, 0.0))
    corr = np.where(denom > 0, full / np.where(denom > 0, denom, 1.0), 0.0)
    return lags, corr


def _envelope(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Zero-mean amplitude envelope: |analytic signal| low-passed without phase shift."""
    env = np.abs(ss.hilbert(x))
    sos = ss.butter(2, _ENVELOPE_CUTOFF_HZ, fs=sample_rate, output="sos")
    env = ss.sosfiltfilt(sos, env)
    return env - env.mean()


def _max_lag(n_ref: int, n_deg: int, sample_rate: int, max_delay_seconds: float) -> int:
    """The lag bound, kept to at most half the shorter signal so that overlaps stay long."""
    if max_delay_seconds < 0:
        raise ValueError(f"max_delay_seconds must be >= 0, got {max_delay_seconds}")
    return int(min(round(max_delay_seconds * sample_rate), min(n_ref, n_deg) // 2))


def estimate_delay(reference: np.ndarray, degraded: np.ndarray, sample_rate: int,
                   max_delay_seconds: float = 0.1, method: Method = "auto") -> int:
    """The lag in samples (positive = ``degraded`` is late) with |lag| <= max delay that
    maximises the normalised cross-correlation of the two 1-D signals.

    ``method="auto"`` uses the waveform correlation when its peak reaches
    ``WAVEFORM_MIN_CORRELATION`` and the envelope correlation otherwise. Returns 0 when
    either signal is silent (no delay can be measured).
    """
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"expected 1-D signals, got shapes {ref.shape} and {deg.shape}")
    if method not in ("auto", "waveform", "envelope"):
        raise ValueError(f"unknown method {method!r}")
    max_lag = _max_lag(len(ref), len(deg), sample_rate, max_delay_seconds)
    if not np.any(ref) or not np.any(deg):
        return 0
    if method != "envelope":
        lags, corr = _normalized_xcorr(ref, deg, max_lag)
        best = int(np.argmax(corr))
        if method == "waveform" or corr[best] >= WAVEFORM_MIN_CORRELATION:
            return int(lags[best])
    lags, corr = _normalized_xcorr(_envelope(ref, sample_rate), _envelope(deg, sample_rate), max_lag)
    return int(lags[int(np.argmax(corr))])


def align(reference: np.ndarray, degraded: np.ndarray, sample_rate: int,
          max_delay_seconds: float = 0.1, method: Method = "auto",
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove the estimated delay and trim both signals to their common overlap.

    Returns ``(ref, deg, delay)`` with ``len(ref) == len(deg)`` and ``deg[n]`` matching
    ``ref[n]``; ``delay`` is the lag from :func:`estimate_delay`.
    """
    ref, deg = np.asarray(reference), np.asarray(degraded)
    delay = estimate_delay(ref, deg, sample_rate, max_delay_seconds, method)
    if delay >= 0:
        deg = deg[delay:]
    else:
        ref = ref[-delay:]
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n], delay
