"""Named architecture configs: starting points for training, benchmarks and tests."""

from __future__ import annotations

from .model import AudioCodecConfig
from .seanet import SEANetConfig
from ..quantization import QuantizerConfig


def speech_16khz() -> AudioCodecConfig:
    """Causal 16 kHz speech codec: hop 320 (50 Hz), 12 x 1024 codes = 0.5..6 kbps."""
    return AudioCodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(ratios=(8, 5, 4, 2), n_filters=32, dimension=128, lstm_layers=2),
        quantizer=QuantizerConfig(kind="ema", n_q=12, codebook_size=1024, quantizer_dropout=0.5),
    )


def encodec_24khz() -> AudioCodecConfig:
    """EnCodec 24 kHz-like: causal, hop 320 (75 Hz), 32 x 1024 codes = 0.75..24 kbps."""
    return AudioCodecConfig(
        sample_rate=24000,
        seanet=SEANetConfig(ratios=(8, 5, 4, 2), n_filters=32, dimension=128, lstm_layers=2),
        quantizer=QuantizerConfig(kind="ema", n_q=32, codebook_size=1024),
    )


def tiny(sample_rate: int = 16000, channels: int = 1) -> AudioCodecConfig:
    """A few thousand parameters, hop 16: for tests and smoke runs only."""
    return AudioCodecConfig(
        sample_rate=sample_rate,
        seanet=SEANetConfig(channels=channels, ratios=(4, 2, 2), n_filters=4, dimension=16, lstm_layers=1),
        quantizer=QuantizerConfig(kind="ema", n_q=4, codebook_size=64, kmeans_iters=5),
    )


PRESETS = {"speech_16khz": speech_16khz, "encodec_24khz": encodec_24khz, "tiny": tiny}
