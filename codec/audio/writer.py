"""Writing audio files block by block, atomically.

The format comes from the extension. Blocks [C, n] are appended to a temporary file in the
target's folder as they come (``codec.files.atomic_write``), which is moved onto the target
only when the last block is written: a long decode never holds its whole output, and a
failure at any block leaves the previous file (or none), never a half-written one.
Samples are clipped to [-1, 1] and NaNs written as 0. Opus/MP3 at a rate their encoder does
not support are resampled to 48 kHz on the way (``Resampler``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec.errors import CodecError
from codec.files import atomic_write

from .reader import libsndfile_message
from .resample import Resampler

# extension -> (libsndfile format, subtype, sample rates it can write; None = any)
WRITE_FORMATS: dict[str, tuple[str, str, frozenset[int] | None]] = {
    ".wav": ("WAV", "PCM_16", None),
    ".flac": ("FLAC", "PCM_16", None),
    ".ogg": ("OGG", "VORBIS", None),
    ".opus": ("OGG", "OPUS", frozenset({8000, 12000, 16000, 24000, 48000})),
    ".mp3": ("MP3", "MPEG_LAYER_III",
             frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})),
}
FALLBACK_RATE = 48000  # for Opus/MP3 at a rate they cannot store
_WRITE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError, AssertionError, OSError)


class AudioWriter:
    """Appends blocks [C, n] to an open audio file; made by ``open_writer``."""

    def __init__(self, file: sf.SoundFile, path: Path, tmp: Path, channels: int,
                 resampler: Resampler | None) -> None:
        self._file, self.path, self._tmp = file, path, tmp
        self.channels = channels
        self._resampler = resampler
        self.frames = 0  # written so far, at the file's rate

    def write(self, block: torch.Tensor) -> None:
        """Append [C, n] samples (any float dtype or device)."""
        if block.dim() != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected [{self.channels}, n] samples, got shape {tuple(block.shape)}")
        x = torch.nan_to_num(block.detach().to("cpu", torch.float32), nan=0.0)
        if self._resampler is not None:
            x = self._resampler.push(x)
        self._append(x)

    def _finish(self) -> None:
        if self._resampler is not None:
            self._append(self._resampler.finish())

    def _append(self, x: torch.Tensor) -> None:
        if x.shape[-1] == 0:
            return
        data = np.ascontiguousarray(x.clamp(-1.0, 1.0).numpy().T)  # [n, C]
        try:
            self._file.write(data)
        except _WRITE_ERRORS as e:
            raise CodecError(f"Cannot write '{self.path}' ({libsndfile_message(e, self._tmp)}).") from None
        self.frames += data.shape[0]


def _format_of(p: Path) -> tuple[str, str, frozenset[int] | None]:
    ext = p.suffix.lower()
    if ext not in WRITE_FORMATS:
        known = ", ".join(WRITE_FORMATS)
        raise CodecError(f"Cannot write '{p}': unsupported extension '{p.suffix}' (use one of {known}).")
    return WRITE_FORMATS[ext]


@contextlib.contextmanager
def open_writer(path: str | os.PathLike, sample_rate: int, channels: int,
                force: bool = False) -> Iterator[AudioWriter]:
    """``with open_writer(path, rate, C) as w: w.write(block) ...``: the file appears at ``path``
    when the block ends without an exception, else nothing is left."""
    p = Path(path)
    fmt, subtype, rates = _format_of(p)
    resampler = None
    if rates is not None and sample_rate not in rates:
        resampler, sample_rate = Resampler(sample_rate, FALLBACK_RATE, channels), FALLBACK_RATE
    with atomic_write(p, force) as tmp:
        try:
            file = sf.SoundFile(str(tmp), "w", sample_rate, channels, subtype, format=fmt)
        except _WRITE_ERRORS as e:
            raise CodecError(f"Cannot write '{p}' ({libsndfile_message(e, tmp)}).") from None
        with file:
            writer = AudioWriter(file, p, tmp, channels, resampler)
            yield writer
            writer._finish()
        if writer.frames == 0:
            raise ValueError(f"no samples were written to '{p}'")


def write_blocks(path: str | os.PathLike, blocks: Iterable[torch.Tensor], sample_rate: int,
                 force: bool = False) -> int:
    """Write blocks [C, n] (C from the first) as they come, atomically; returns the frames written."""
    p = Path(path)
    _format_of(p)  # an unsupported extension fails before the first block is computed
    it = iter(blocks)
    first = next(it, None)
    if first is None or first.dim() != 2:
        raise ValueError(f"expected non-empty [C, T] blocks for '{p}'")
    with open_writer(p, sample_rate, first.shape[0], force) as writer:
        writer.write(first)
        for block in it:
            writer.write(block)
    return writer.frames
