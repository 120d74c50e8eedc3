"""Shared fixtures: a tiny random model on disk, real speech clips from ../shared/devspeech."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import AudioCodec, save_pretrained
from codec.audio.presets import tiny

# Tiny models run fastest, and steadily on a busy machine, on one thread (per-timestep LSTM
# and small convs pay more for thread synchronisation than they gain).
torch.set_num_threads(1)
os.environ.setdefault("CODEC_THREADS", "1")  # CLI tests run in this process: keep one thread

REPO = Path(__file__).resolve().parents[1]
DEVSPEECH = REPO.parent / "shared" / "data" / "devspeech"
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """A real 16 kHz speech clip bundled with the repo: (float32 samples [T], sample rate)."""
    data, sr = sf.read(SAMPLES / "arctic_slt_a0009.flac", dtype="float32")
    return data, sr


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny, randomly initialised (then k-means-initialised) model saved as a checkpoint folder."""
    torch.manual_seed(0)
    model = AudioCodec(tiny())
    data, _ = sf.read(SAMPLES / "arctic_slt_a0009.flac", dtype="float32")
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(data[None, None, :16000]))  # k-means init of the codebooks on real speech
    model.eval()
    folder = save_pretrained(model, tmp_path_factory.mktemp("models") / "tiny-test", {"license": "MIT"})
    # .cdc files name their model ("tiny-test"), never its local path: decoding finds it by that name
    os.environ["CODEC_MODELS_DIR"] = str(folder.parent)
    return folder
