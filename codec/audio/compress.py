"""Audio <-> codes with everything a file needs: resampling, channels, length, chunking.

Channels: a mono model codes each input channel as its own stream (stereo in, stereo out,
at twice the bitrate); ``downmix=True`` averages to mono first. A model with C channels
takes audio with C channels (mono is repeated, anything else is averaged to mono first).

Causal models run chunk by chunk (``chunk_seconds``) through their streaming state, so a
long file needs bounded memory and gives exactly the codes of one offline pass.
"""

from __future__ import annotations

import torch

from .bitstream import CdcHeader
from .io import Audio, resample, to_channels
from .model import AudioCodec
from .streaming import can_stream

CHUNK_SECONDS = 10.0


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
def encode_audio(model: AudioCodec, audio: Audio, n_q: int, model_name: str, fingerprint: str,
                 downmix: bool = False, chunk_seconds: float = CHUNK_SECONDS) -> tuple[CdcHeader, torch.Tensor]:
    """Audio -> (.cdc header, codes [S, n_q, F]) for S independently coded streams."""
    x = to_model_input(model, audio, downmix).to(next(model.parameters()).device)
    if can_stream(model):
        chunk = max(model.hop_length, int(chunk_seconds * model.sample_rate) // model.hop_length * model.hop_length)
        with model.streaming(x.shape[0]):
            parts = [model.encode_step(x[..., i : i + chunk], n_q) for i in range(0, x.shape[-1], chunk)]
            codes = torch.cat(parts + [model.encode_flush(n_q)], dim=-1)
    else:
        codes = model.encode(x, n_q)
    header = CdcHeader(
        model=model_name,
        model_fingerprint=fingerprint,
        sample_rate=model.sample_rate,
        frame_rate=model.config.frame_rate,
        original_sample_rate=audio.sample_rate,
        channels=codes.shape[0],
        num_samples=audio.num_samples,
        num_frames=codes.shape[-1],
        codebook_sizes=tuple(model.quantizer.codebook_sizes[:n_q]),
    )
    return header, codes.cpu()


@torch.inference_mode()
def decode_audio(model: AudioCodec, header: CdcHeader, codes: torch.Tensor,
                 chunk_seconds: float = CHUNK_SECONDS) -> Audio:
    """(header, codes [S, Q, F]) -> Audio at the original sample rate and length."""
    codes = codes.to(next(model.parameters()).device)
    if can_stream(model):
        frames = max(1, int(chunk_seconds * model.config.frame_rate))
        with model.streaming(codes.shape[0]):
            wav = torch.cat([model.decode_step(codes[..., i : i + frames])
                             for i in range(0, codes.shape[-1], frames)], dim=-1)
    else:
        wav = model.decode(codes)
    wav = wav.reshape(-1, wav.shape[-1]).float().cpu()  # [S * model channels, T']
    wav = resample(wav, model.sample_rate, header.original_sample_rate)
    length = header.num_samples
    wav = torch.nn.functional.pad(wav, (0, max(0, length - wav.shape[-1])))[..., :length]
    return Audio(samples=wav, sample_rate=header.original_sample_rate)
