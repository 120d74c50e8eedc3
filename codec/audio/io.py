"""Audio in memory: the ``Audio`` record, whole-file reading and writing, channel conversion.

The file work is done block by block in reader.py (reading with validation: formats by
content, cut and corrupted files, NaN samples) and writer.py (atomic writing, format from
the extension); resampling is resample.py. Every failure is a ``CodecError`` with one
sentence that names the file. For files too long to hold whole, use ``open_audio`` and
``write_blocks`` directly (``encode_audio`` and ``decode_stream`` in compress.py do).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from codec.errors import CodecError

from .reader import READ_FRAMES, AudioReader, open_audio
from .resample import Resampler, resample
from .writer import WRITE_FORMATS, open_writer, write_blocks

__all__ = ["Audio", "AudioReader", "READ_FRAMES", "Resampler", "WRITE_FORMATS", "open_audio", "open_writer",
           "read_audio", "resample", "to_channels", "write_audio", "write_blocks"]


@dataclass(frozen=True)
class Audio:
    samples: torch.Tensor  # [C, T] float32 in [-1, 1] (not enforced)
    sample_rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def num_samples(self) -> int:
        return self.samples.shape[-1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def exact_frames(self) -> int:
        """What ``blocks`` gives in all (as ``AudioReader.exact_frames``)."""
        return self.num_samples

    def blocks(self, frames: int = READ_FRAMES) -> Iterator[torch.Tensor]:
        """Views [C, <= frames] of the samples, in order (as ``AudioReader.blocks``)."""
        for start in range(0, self.num_samples, frames):
            yield self.samples[:, start : start + frames]


def read_audio(path: str | os.PathLike) -> Audio:
    """Read any WAV/FLAC/OGG/Opus/MP3 file (format by content) as float32 [C, T].

    Memory: the samples once (filled block by block), plus one block.
    """
    with open_audio(path) as reader:
        return Audio(samples=reader.read(), sample_rate=reader.sample_rate)


def to_channels(samples: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, T] -> [channels, T]: mean downmix to mono, or repeat a mono signal."""
    c = samples.shape[0]
    if c == channels:
        return samples
    if channels == 1:
        return samples.mean(dim=0, keepdim=True)
    if c == 1:
        return samples.expand(channels, -1).clone()
    raise CodecError(f"Cannot convert {c}-channel audio to {channels} channels; "
                     "only downmixing to mono and duplicating mono are supported.")


def write_audio(path: str | os.PathLike, samples: torch.Tensor, sample_rate: int,
                force: bool = False) -> None:
    """Write [C, T] audio atomically; format from the extension, samples clipped to [-1, 1].

    NaNs are written as 0. Opus/MP3 at a rate the encoder does not support are resampled
    to 48 kHz first.
    """
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise ValueError(f"expected non-empty [C, T] samples, got shape {tuple(samples.shape)}")
    write_blocks(path, Audio(samples, sample_rate).blocks(), sample_rate, force)
