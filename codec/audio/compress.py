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

import torch

from .bitstream import CdcHeader
from .io import Audio, resample, to_channels
from .model import AudioCodec
from .segments import decode_segments, encode_segments, model_grid
from ..streaming import can_stream

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
                 downmix: bool = False, chunk_seconds: float = CHUNK_SECONDS,
                 batch_size: int = 1) -> tuple[CdcHeader, torch.Tensor]:
    """Audio -> (.cdc header, codes [S, n_q, F]) for S independently coded streams."""
    x = to_model_input(model, audio, downmix).to(next(model.parameters()).device)
    segmented = {}
    if can_stream(model):
        chunk = max(model.hop_length, int(chunk_seconds * model.sample_rate) // model.hop_length * model.hop_length)
        with model.streaming(x.shape[0]):
            parts = [model.encode_step(x[..., i : i + chunk], n_q) for i in range(0, x.shape[-1], chunk)]
            codes = torch.cat(parts + [model.encode_flush(n_q)], dim=-1)
    else:
        grid = model_grid(model, x.shape[-1], chunk_seconds)
        codes, scales = encode_segments(model, x, n_q, grid, model.config.normalize, batch_size)
        segmented = dict(segment_samples=grid.segment, segment_stride=grid.stride, model_num_samples=grid.num_samples,
                         normalized=scales is not None,
                         scales=() if scales is None else tuple(scales.float().cpu().flatten().tolist()))
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
        **segmented,
    )
    return header, codes.cpu()


@torch.inference_mode()
def decode_audio(model: AudioCodec, header: CdcHeader, codes: torch.Tensor,
                 chunk_seconds: float = CHUNK_SECONDS) -> Audio:
    """(header, codes [S, Q, F]) -> Audio at the original sample rate and length."""
    device = next(model.parameters()).device
    codes = codes.to(device)
    if header.grid is not None:
        scales = torch.tensor(header.scales, device=device).view(codes.shape[0], -1) if header.normalized else None
        wav = decode_segments(model, codes, header.grid, scales)
    elif can_stream(model):
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
