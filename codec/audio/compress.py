"""Audio <-> codes with everything a file needs: resampling, channels, length, chunking.

Channels: a mono model codes each input channel as its own stream (stereo in, stereo out,
at twice the bitrate); ``downmix=True`` averages to mono first. A model with C channels
takes audio with C channels (mono is repeated, anything else is averaged to mono first).

Causal models run chunk by chunk (``chunk_seconds``) through their streaming state, so a
long file needs bounded memory and gives exactly the codes of one offline pass, whatever the
chunk size. Non-causal models code a fixed grid of overlapping segments (segments.py): the
model's own ``segment_seconds`` (EnCodec 48 kHz: 1 s) or ``chunk_seconds``; an input no longer
than one segment is coded in one pass. ``batch_size`` > 1 codes that many equal-length segments
at once (faster on a GPU); batched convolutions round differently, which can flip near-tie codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..streaming import can_stream
from ..tokens import TokenSpec
from .io import Audio, resample, to_channels
from .model import AudioCodec
from .segments import SegmentGrid, decode_segments, encode_segments, model_grid

CHUNK_SECONDS = 10.0


@dataclass(frozen=True)
class EncodedAudio:
    """A coded recording: its codes and what decoding needs to give the original back.

    codes:        [S, Q, F] int64 on the CPU, S independently coded streams
    token_spec:   the codes' levels and frame rate
    grid, scales: segmented coding of non-causal models (else None): the segment grid at the
                  model rate and, for RMS-normalised segments, the scales [S, segments]
    """

    codes: torch.Tensor
    token_spec: TokenSpec
    model_sample_rate: int
    sample_rate: int  # of the original
    num_samples: int  # of the original, at its rate
    grid: SegmentGrid | None = None
    scales: torch.Tensor | None = None

    @property
    def streams(self) -> int:
        return self.codes.shape[0]


def to_model_input(model: AudioCodec, audio: Audio, downmix: bool) -> torch.Tensor:
    """Audio [C, T] at any rate -> model input [S, model channels, T'] at the model's rate."""
    samples = audio.samples
    if downmix:
        samples = to_channels(samples, 1)
    samples = resample(samples, audio.sample_rate, model.sample_rate)
    if model.channels == 1:
        return samples[:, None, :]
    if samples.shape[0] != model.channels:
        samples = to_channels(to_channels(samples, 1), model.channels)
    return samples[None]


@torch.inference_mode()
def encode_audio(model: AudioCodec, audio: Audio, n_q: int | None = None, downmix: bool = False,
                 chunk_seconds: float = CHUNK_SECONDS, batch_size: int = 1) -> EncodedAudio:
    """Audio -> codes of S independently coded streams with ``n_q`` levels (default: the model's n_q)."""
    n_q = n_q or model.n_q
    spec = model.config.token_spec.with_num_codebooks(n_q)
    x = to_model_input(model, audio, downmix).to(next(model.parameters()).device)
    grid = scales = None
    if can_stream(model):
        chunk = max(model.hop_length, int(chunk_seconds * model.sample_rate) // model.hop_length * model.hop_length)
        with model.streaming(x.shape[0]):
            parts = [model.encode_step(x[..., i : i + chunk], n_q) for i in range(0, x.shape[-1], chunk)]
            codes = torch.cat(parts + [model.encode_flush(n_q)], dim=-1)
    else:
        grid = model_grid(model, x.shape[-1], chunk_seconds)
        codes, scales = encode_segments(model, x, n_q, grid, model.config.normalize, batch_size)
        scales = None if scales is None else scales.float().cpu()
    return EncodedAudio(codes.cpu(), spec, model.sample_rate, audio.sample_rate, audio.num_samples, grid, scales)


@torch.inference_mode()
def decode_audio(model: AudioCodec, encoded: EncodedAudio, chunk_seconds: float = CHUNK_SECONDS) -> Audio:
    """Coded audio -> Audio at the original sample rate and length."""
    device = next(model.parameters()).device
    codes = encoded.codes.to(device)
    if encoded.grid is not None:
        scales = None if encoded.scales is None else encoded.scales.to(device)
        wav = decode_segments(model, codes, encoded.grid, scales)
    elif can_stream(model):
        frames = max(1, int(chunk_seconds * model.config.frame_rate))
        with model.streaming(codes.shape[0]):
            wav = torch.cat([model.decode_step(codes[..., i : i + frames])
                             for i in range(0, codes.shape[-1], frames)], dim=-1)
    else:
        wav = model.decode(codes)
    wav = wav.reshape(-1, wav.shape[-1]).float().cpu()  # [S * model channels, T']
    wav = resample(wav, model.sample_rate, encoded.sample_rate)
    length = encoded.num_samples
    wav = torch.nn.functional.pad(wav, (0, max(0, length - wav.shape[-1])))[..., :length]
    return Audio(samples=wav, sample_rate=encoded.sample_rate)
