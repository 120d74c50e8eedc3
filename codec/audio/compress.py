"""Audio <-> codes with everything a file needs: resampling, channels, length, chunking.

Channels: a mono model codes each input channel as its own stream (stereo in, stereo out,
at twice the bitrate); ``downmix=True`` averages to mono first. A model with C channels
takes audio with C channels (mono is repeated, anything else is averaged to mono first).

Causal models run chunk by chunk (``chunk_seconds``) through their streaming state, so a
long file needs bounded memory and gives the codes of one offline pass, whatever the chunk
size, up to float rounding: convolutions over other lengths round differently, which can flip
a near-tie code (``devspeech_16khz_v7``, 10 s of speech: none with 1 s to 10 s chunks, 0.05% of
the codes with 250 ms or 80 ms ones). Non-causal models code a fixed grid of
overlapping segments (segments.py): the model's own ``segment_seconds`` (EnCodec 48 kHz: 1 s) or
``chunk_seconds``; an input no longer than one segment is coded in one pass. ``batch_size`` > 1
codes that many equal-length segments at once (faster on a GPU); batched convolutions round
differently, which can flip near-tie codes.

Memory: the input is consumed block by block, from an ``Audio`` in memory or straight from
disk (``open_audio``: a file is never held whole); both take the same steps (channels,
``Resampler``, ``rechunk`` or ``SegmentWindow``) and give the same codes. Encoding holds one
chunk or segment of audio and the codes. ``decode_stream`` yields the decoded audio block by
block (for ``write_blocks``); ``decode_audio`` joins those blocks into an ``Audio``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from ..streaming import can_stream
from ..tokens import TokenSpec
from .io import Audio, to_channels
from .model import AudioCodec
from .reader import READ_FRAMES
from .resample import Resampler, resampled_length
from .segments import SegmentGrid, model_grid, segment_scale
from .stream import SegmentWindow, blend_segments, rechunk

CHUNK_SECONDS = 10.0


class AudioSource(Protocol):
    """What encoding reads: an ``Audio`` or an ``AudioReader`` (``open_audio(path)``)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def exact_frames(self) -> int | None: ...  # what blocks() will give, where known before reading

    def blocks(self, frames: int = READ_FRAMES) -> Iterator[torch.Tensor]: ...  # [C, n] float32


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


class _ModelInput:
    """A source's blocks as model input [S, model channels, n] at the model's rate."""

    def __init__(self, model: AudioCodec, source: AudioSource, downmix: bool) -> None:
        self.model, self.source, self.downmix = model, source, downmix
        channels = 1 if downmix else source.channels
        self.streams = channels if model.channels == 1 else 1
        self._resampler = Resampler(source.sample_rate, model.sample_rate, channels)
        self.num_samples = 0  # read from the source so far, at its rate
        frames = source.exact_frames
        # the model-rate length, where the source knows its own in advance
        self.expected = None if frames is None else resampled_length(frames, source.sample_rate, model.sample_rate)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for block in self.source.blocks(READ_FRAMES):  # [C, n]
            self.num_samples += block.shape[-1]
            yield self._shape(self._resampler.push(to_channels(block, 1) if self.downmix else block))
        yield self._shape(self._resampler.finish())

    def _shape(self, samples: torch.Tensor) -> torch.Tensor:
        """[C, n] -> [S, model channels, n]."""
        channels = self.model.channels
        if channels == 1:
            return samples[:, None, :]
        if samples.shape[0] != channels:
            samples = to_channels(to_channels(samples, 1), channels)
        return samples[None]


class _Joined:
    """Pieces [..., f] in order -> one CPU tensor [..., F]: written into it as they come where F
    is known in advance (no second copy, no heap of small pieces kept), else joined at the end."""

    def __init__(self, frames: int | None) -> None:
        self._frames = frames
        self._out: torch.Tensor | None = None
        self._filled = 0  # frames written into ``_out``
        self._parts: list[torch.Tensor] = []  # pieces that did not fit (none when F is right)

    def append(self, piece: torch.Tensor) -> None:
        f = piece.shape[-1]
        if self._out is None and self._frames is not None:
            self._out = torch.empty(*piece.shape[:-1], self._frames, dtype=piece.dtype)
        if self._out is not None and not self._parts and self._filled + f <= self._out.shape[-1]:
            self._out[..., self._filled : self._filled + f] = piece
            self._filled += f
        else:
            self._parts.append(piece.cpu())

    def result(self) -> torch.Tensor:
        if self._out is None:
            return torch.cat(self._parts, dim=-1)
        if self._parts or self._filled < self._out.shape[-1]:
            return torch.cat([self._out[..., : self._filled], *self._parts], dim=-1)
        return self._out


@torch.inference_mode()
def encode_audio(model: AudioCodec, audio: AudioSource, n_q: int | None = None, downmix: bool = False,
                 chunk_seconds: float = CHUNK_SECONDS, batch_size: int = 1) -> EncodedAudio:
    """Audio (in memory, or a file open with ``open_audio``) -> codes of S independently coded
    streams with ``n_q`` levels (default: the model's n_q)."""
    n_q = n_q or model.n_q
    spec = model.config.token_spec.with_num_codebooks(n_q)
    inputs = _ModelInput(model, audio, downmix)
    grid = scales = None
    if can_stream(model):
        codes = _encode_causal(model, inputs, n_q, chunk_seconds)
    else:
        codes, grid, scales = _encode_segmented(model, inputs, n_q, chunk_seconds, batch_size)
    return EncodedAudio(codes, spec, model.sample_rate, audio.sample_rate, inputs.num_samples, grid, scales)


def _encode_causal(model: AudioCodec, inputs: _ModelInput, n_q: int, chunk_seconds: float) -> torch.Tensor:
    """Model input in chunks of ``chunk_seconds`` through the streaming state -> codes [S, Q, F]."""
    device = next(model.parameters()).device
    chunk = max(model.hop_length, int(chunk_seconds * model.sample_rate) // model.hop_length * model.hop_length)
    codes = _Joined(None if inputs.expected is None else max(1, -(-inputs.expected // model.hop_length)))
    with model.streaming(inputs.streams):
        for x in rechunk(inputs, chunk):
            codes.append(model.encode_step(x.to(device), n_q))
        codes.append(model.encode_flush(n_q))
    return codes.result()


def _encode_segmented(model: AudioCodec, inputs: _ModelInput, n_q: int, chunk_seconds: float,
                      batch_size: int) -> tuple[torch.Tensor, SegmentGrid, torch.Tensor | None]:
    """Model input cut on the model's segment grid -> (codes [S, Q, F], grid, scales [S, N] or None).

    Consecutive segments of equal length are coded ``batch_size`` at a time, the batches of
    ``tests/segment_reference.py``: the same codes.
    """
    device = next(model.parameters()).device
    normalize = model.config.normalize
    layout = model_grid(model, 0, chunk_seconds)
    window = SegmentWindow(layout.segment, layout.stride)
    expected = None if inputs.expected is None else replace(layout, num_samples=inputs.expected)
    codes = _Joined(None if expected is None else sum(expected.frames(model.hop_length)))  # [S, Q, F]
    scales = _Joined(None if expected is None else expected.num_segments)  # [S, N]
    batch: list[torch.Tensor] = []  # segments [S, C, n] of one length

    def code_batch() -> None:
        stacked = torch.stack(batch, 1)  # [S, b, C, n]
        flat = stacked.flatten(0, 1)
        scale = segment_scale(flat) if normalize else None
        coded = model.encode(flat if scale is None else flat / scale[:, None, None], n_q)
        coded = coded.view(*stacked.shape[:2], *coded.shape[1:])  # [S, b, Q, f]
        for j in range(len(batch)):
            codes.append(coded[:, j])
            if scale is not None:
                scales.append(scale.view(stacked.shape[:2])[:, j : j + 1].float())
        batch.clear()

    def add(segments: list[tuple[int, torch.Tensor]]) -> None:
        for _, segment in segments:
            if batch and batch[0].shape[-1] != segment.shape[-1]:
                code_batch()
            batch.append(segment.to(device))
            if len(batch) == batch_size:
                code_batch()

    for x in inputs:
        add(window.push(x))
    add(window.finish())
    if batch:
        code_batch()
    return codes.result(), window.grid, scales.result() if normalize else None


@torch.inference_mode()
def decode_stream(model: AudioCodec, encoded: EncodedAudio,
                  chunk_seconds: float = CHUNK_SECONDS) -> Iterator[torch.Tensor]:
    """Coded audio -> blocks [S * model channels, n] at the original rate, ``encoded.num_samples``
    samples in all: decode a file of any length with ``write_blocks(path, decode_stream(...), rate)``."""
    channels = encoded.streams * model.channels
    resampler = Resampler(model.sample_rate, encoded.sample_rate, channels)
    remaining = encoded.num_samples

    def resampled() -> Iterator[torch.Tensor]:
        for wav in _decode_model_rate(model, encoded, chunk_seconds):  # [S, C, n]
            yield resampler.push(wav.reshape(-1, wav.shape[-1]).float().cpu())
        yield resampler.finish()

    for block in resampled():
        block = block[..., :remaining]
        if block.shape[-1]:
            remaining -= block.shape[-1]
            yield block
    while remaining > 0:  # the model gave fewer samples than the original had: silence
        n = min(remaining, READ_FRAMES)
        remaining -= n
        yield torch.zeros(channels, n)


def _decode_model_rate(model: AudioCodec, encoded: EncodedAudio, chunk_seconds: float) -> Iterator[torch.Tensor]:
    """Codes -> audio blocks [S, C, n] at the model's rate."""
    device = next(model.parameters()).device
    codes = encoded.codes.to(device)
    if encoded.grid is not None:
        scales = None if encoded.scales is None else encoded.scales.to(device)
        yield from blend_segments(model, codes, encoded.grid, scales)
    elif can_stream(model):
        frames = max(1, int(chunk_seconds * model.config.frame_rate))
        with model.streaming(codes.shape[0]):
            for i in range(0, codes.shape[-1], frames):
                yield model.decode_step(codes[..., i : i + frames])
            tail = model.decode_flush()  # what an iSTFT decoder held back; nothing for SEANet
            if tail.shape[-1]:
                yield tail
    else:
        yield model.decode(codes)


def decode_audio(model: AudioCodec, encoded: EncodedAudio, chunk_seconds: float = CHUNK_SECONDS) -> Audio:
    """Coded audio -> Audio at the original sample rate and length (``decode_stream``, joined)."""
    samples = torch.empty(encoded.streams * model.channels, encoded.num_samples)
    filled = 0
    for block in decode_stream(model, encoded, chunk_seconds):
        samples[:, filled : filled + block.shape[-1]] = block
        filled += block.shape[-1]
    return Audio(samples=samples, sample_rate=encoded.sample_rate)
