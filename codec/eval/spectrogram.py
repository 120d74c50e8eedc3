"""Log-mel spectrogram images for logs and reports."""

from __future__ import annotations

import torch
import torchaudio


def spectrogram_image(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[T] audio -> [1, n_mels, frames] log-mel image in [0, 1], low frequencies at the bottom."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=80)(audio.float().cpu())
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    db = db.clamp_min(db.max() - 80)
    return ((db - db.min()) / (db.max() - db.min() + 1e-9)).flip(0)[None]
