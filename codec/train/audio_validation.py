"""Validation of the audio codec: mel distance (DAC's definition), SI-SDR and PESQ on held-out clips,
and a few clips logged as audio and spectrograms."""

from __future__ import annotations

import numpy as np
import torch

from ..audio.model import AudioCodec
from ..data import SegmentDataset, build_valid_batches
from ..eval.spectrogram import spectrogram_image
from ..losses.spectral import mel_distance, si_sdr
from .audio_config import AudioTrainConfig
from .logger import TrainLogger


@torch.no_grad()
def validate_audio(model: AudioCodec, valid_set: SegmentDataset, logger: TrainLogger, step: int,
                   config: AudioTrainConfig) -> dict[str, float]:
    """Average metrics over the validation clips at full bitrate, plus mel distance at 1 codebook."""
    from ..eval.metrics import pesq_wb  # here: its module imports pystoi and scipy.signal, seconds a run may not need

    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, list[float]] = {"mel_distance": [], "mel_distance_1q": [], "si_sdr": [], "pesq_wb": []}
    for index, x in enumerate(logger.track(build_valid_batches(valid_set), len(valid_set), unit="clip")):
        x = x.to(device)  # [1, C, T]
        y = model(x).audio
        y1 = model(x, n_q=1).audio
        sums["mel_distance"].append(float(mel_distance(y, x, model.sample_rate)))
        sums["mel_distance_1q"].append(float(mel_distance(y1, x, model.sample_rate)))
        sums["si_sdr"].append(float(si_sdr(y, x).mean()))
        score = pesq_wb(x[0, 0].cpu().numpy(), y[0, 0].float().cpu().numpy(), model.sample_rate)
        if score is not None:
            sums["pesq_wb"].append(score)
        if index < config.audio_examples:
            log_example(logger, step, f"valid_{index}", x[0, 0], y[0, 0], model.sample_rate)
    results = {k: float(np.mean(v)) for k, v in sums.items() if v}
    logger.log_valid(step, results)
    return results


def log_example(logger: TrainLogger, step: int, name: str, original: torch.Tensor, decoded: torch.Tensor,
                sample_rate: int) -> None:
    """Audio and spectrograms of one validation clip ([T] tensors)."""
    if not logger.enabled:
        return
    for kind, audio in (("original", original), ("decoded", decoded)):
        logger.add_audio(f"{name}/{kind}", audio, step, sample_rate)
        logger.add_image(f"{name}/{kind}_mel", spectrogram_image(audio, sample_rate), step)
