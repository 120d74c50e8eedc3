"""A differentiable re-implementation of resemblyzer's GE2E speaker encoder (``VoiceEncoder``).

Front end (resemblyzer ``audio.wav_to_mel_spectrogram``): 16 kHz audio, 25 ms (400-sample)
periodic Hann window, 10 ms (160-sample) hop, centred frames with zero padding, 40-band Slaney
mel filters from ``librosa.filters.mel``, *power* mel spectrogram (no log).
Network: 3-layer LSTM 40 -> 256, linear 256 -> 256, ReLU, L2 normalisation.
Utterance embedding (``VoiceEncoder.embed_utterance`` with its defaults ``rate=1.3``,
``min_coverage=0.75``): 160-frame partial windows every 77 frames (about 50 % overlap), the
audio zero-padded to cover the last window, which is dropped when it covers less than 75 % real
audio; the L2-normalised partial embeddings are averaged and normalised again.
One deliberate difference: clips shorter than one window (1.6 s) are embedded as a whole
instead of being zero-padded to 1.6 s.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import librosa
import torch
from torch import Tensor, nn

from codec.errors import CodecError

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIAL_RATE = 1.3  # partial windows per second, resemblyzer's default
MIN_COVERAGE = 0.75
PARTIAL_STEP = int(round(SAMPLE_RATE / PARTIAL_RATE / HOP))  # 77 frames
TARGET_DBFS = -30.0  # resemblyzer's volume normalisation target (increase only)


def bundled_weights_path() -> Path:
    """Path of ``pretrained.pt`` inside the installed resemblyzer package (not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise CodecError(
            "the GE2E speaker-encoder weights ship with the resemblyzer package; install it "
            "(pip install resemblyzer) or pass weights_path pointing to its pretrained.pt."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def partial_slices(n_samples: int) -> tuple[list[int], int]:
    """Start frames of the partial windows and the padded waveform length, as resemblyzer does.

    Returns ``([], n_samples)`` when the clip is shorter than one window (embed it whole).
    """
    n_frames = math.ceil((n_samples + 1) / HOP)
    steps = max(1, n_frames - PARTIAL_FRAMES + PARTIAL_STEP + 1)
    starts = list(range(0, steps, PARTIAL_STEP))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    if len(starts) == 1 and n_samples < PARTIAL_FRAMES * HOP:
        return [], n_samples
    return starts, max(n_samples, (starts[-1] + PARTIAL_FRAMES) * HOP)


class GE2EEncoder(nn.Module):
    """resemblyzer's network plus its mel front end, differentiable end to end.

    ``forward(wav [N, T] at 16 kHz) -> embeddings [N, 256]`` (unit norm, non-negative).
    """

    def __init__(self, normalize_volume: bool = True) -> None:
        super().__init__()
        self.normalize_volume = normalize_volume
        self.lstm = nn.LSTM(N_MELS, 256, num_layers=3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)  # [40, 201]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def load_weights(self, path: str | Path) -> None:
        """Load resemblyzer's checkpoint (``{"model_state": {lstm.*, linear.*, ...}}``)."""
        path = Path(path)
        if not path.is_file():
            raise CodecError(
                f"GE2E weights not found at {path}; use weights_path=None for the copy bundled "
                "with the resemblyzer package, or copy that package's pretrained.pt to this path."
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
        if state is None:
            raise CodecError(f"{path} is not a resemblyzer GE2E checkpoint.")
        own = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
        try:
            self.load_state_dict(own, strict=True)
        except RuntimeError as exc:
            raise CodecError(f"{path} does not hold resemblyzer GE2E weights ({exc}).") from exc

    def mel(self, wav: Tensor) -> Tensor:
        """[N, T] -> power mel spectrogram [N, 1 + T // 160, 40], as librosa computes it."""
        spec = torch.stft(
            wav, N_FFT, HOP, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.pow(2) + spec.imag.pow(2)  # [N, 201, F]
        return torch.matmul(self.mel_basis, power).transpose(1, 2)

    def embed_frames(self, mels: Tensor) -> Tensor:
        """[M, F, 40] -> L2-normalised embeddings [M, 256] (``VoiceEncoder.forward``)."""
        if mels.is_cuda and torch.is_grad_enabled():
            with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNN backward needs train mode
                _, (hidden, _) = self.lstm(mels)
        else:
            _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return nn.functional.normalize(raw, dim=1, eps=1e-12)

    def forward(self, wav: Tensor) -> Tensor:
        if self.normalize_volume:
            rms = wav.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-4)
            wav = wav * (10 ** (TARGET_DBFS / 20) / rms).clamp_min(1.0)
        starts, padded = partial_slices(wav.shape[-1])
        wav = nn.functional.pad(wav, (0, padded - wav.shape[-1]))
        mels = self.mel(wav)  # [N, F, 40]
        if not starts:
            return self.embed_frames(mels)
        parts = torch.stack([mels[:, s : s + PARTIAL_FRAMES] for s in starts], 1)  # [N, P, 160, 40]
        partial = self.embed_frames(parts.flatten(0, 1)).unflatten(0, parts.shape[:2])  # [N, P, 256]
        return nn.functional.normalize(partial.mean(1), dim=1, eps=1e-12)
