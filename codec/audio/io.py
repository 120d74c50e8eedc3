"""Audio file input/output: robust reading, channel/rate conversion, atomic writing.

Reading goes through soundfile (libsndfile), which detects the format from the file's
content, not its name. Every failure becomes a ``CodecError`` with one sentence that
names the file. Writing picks the format from the extension and is atomic: the audio is
written to a temporary file in the same directory, then moved onto the target.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec.errors import CodecError
from codec.files import atomic_write, check_readable

# extension -> (libsndfile format, subtype, sample rates it can write; None = any)
WRITE_FORMATS: dict[str, tuple[str, str, frozenset[int] | None]] = {
    ".wav": ("WAV", "PCM_16", None),
    ".flac": ("FLAC", "PCM_16", None),
    ".ogg": ("OGG", "VORBIS", None),
    ".opus": ("OGG", "OPUS", frozenset({8000, 12000, 16000, 24000, 48000})),
    ".mp3": ("MP3", "MPEG_LAYER_III",
             frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})),
}
_LOSSY = {"OGG", "MP3"}  # frame counts of these formats may be estimates
_READ_BLOCK = 1 << 20  # frames per read call: memory follows the real data, not the header


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


def _check_riff(p: Path) -> None:
    """Raise if a RIFF/RIFX/RF64 file's data chunk claims more bytes than the file holds.

    libsndfile silently reads what is there, so a file cut short would pass unnoticed.
    Streaming writers leave the data size as 0 or 0xFFFFFFFF; such files are accepted.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:] != b"WAVE":
            return
        endian = ">" if head[:4] == b"RIFX" else "<"
        ds64_data: int | None = None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack(endian + "4sI", f.read(8))
            if cid == b"ds64" and csize >= 16:
                ds64_data = struct.unpack("<Q", f.read(16)[8:16])[0]
            if cid == b"data":
                if head[:4] == b"RF64" and csize == 0xFFFFFFFF and ds64_data is not None:
                    csize = ds64_data
                elif csize in (0, 0xFFFFFFFF):
                    return  # streamed WAV: size unknown, trust what libsndfile reads
                available = size - pos - 8
                if csize > available:
                    raise CodecError(f"Input file '{p}' is truncated (its data chunk declares "
                                     f"{csize} bytes but only {available} are present).")
                return
            nxt = pos + 8 + csize
            if csize % 2:  # chunks are padded to even length, unless the writer forgot
                f.seek(nxt)
                unpadded, padded = (b := f.read(5))[:4], b[1:]
                if _is_chunk_id(padded) or not _is_chunk_id(unpadded):
                    nxt += 1
            pos = nxt
        if pos > size:
            raise CodecError(f"Input file '{p}' is truncated (a chunk ends past the end of the file).")


def _check_ogg(p: Path) -> None:
    """Raise unless an Ogg file ends with a complete end-of-stream page (libsndfile decodes
    a cut file without complaint). Page: b"OggS", version, flags (0x04: end of stream), ...,
    byte 26: segment count, then the segment table and the segment data."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        if f.read(4) != b"OggS":
            return
        f.seek(max(0, size - 65307))  # the largest possible Ogg page
        tail = f.read()
    i = len(tail)
    while (i := tail.rfind(b"OggS", 0, i)) >= 0:
        if i + 27 <= len(tail) and i + 27 + tail[i + 26] <= len(tail):
            nseg = tail[i + 26]
            if i + 27 + nseg + sum(tail[i + 27 : i + 27 + nseg]) == len(tail):
                if tail[i + 5] & 0x04:
                    return
                break
    raise CodecError(f"Input file '{p}' is truncated (its last Ogg page is missing or incomplete).")


def _is_chunk_id(b: bytes) -> bool:
    return len(b) == 4 and all(32 <= c < 127 for c in b)


def read_audio(path: str | os.PathLike) -> Audio:
    """Read any WAV/FLAC/OGG/Opus/MP3 file (format by content) as float32 [C, T]."""
    p = check_readable(path)
    _check_riff(p)
    _check_ogg(p)
    opened = False
    try:
        with sf.SoundFile(str(p)) as f:
            opened = True
            sample_rate, declared, fmt = f.samplerate, f.frames, f.format
            blocks = []
            while len(block := f.read(_READ_BLOCK, dtype="float32", always_2d=True)):  # [n, C]
                blocks.append(block)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        what = "is truncated or corrupted" if opened else "is not a readable audio file"
        raise CodecError(f"Input file '{p}' {what} ({_short(e, p)}).") from None
    except MemoryError:
        raise CodecError(f"Input file '{p}' is too large to read into memory.") from None
    data = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
    frames = data.shape[0]
    if frames == 0:
        raise CodecError(f"Input file '{p}' contains no audio samples.")
    slack = max(declared // 100, 4608) if fmt in _LOSSY else 0
    if frames < declared - slack:
        raise CodecError(f"Input file '{p}' is truncated (its header declares {declared} "
                         f"samples but only {frames} could be decoded).")
    if not np.isfinite(data).all():
        raise CodecError(f"Input file '{p}' contains NaN or infinite samples.")
    samples = torch.from_numpy(np.ascontiguousarray(data.T))
    return Audio(samples=samples, sample_rate=int(sample_rate))


def _short(e: BaseException, p: Path | None = None) -> str:
    """A one-line, period-free description of a library exception (without the path)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    if p is not None:
        msg = msg.removeprefix(f"Error opening {str(p)!r}: ")
    if "does not exist" in msg:  # libsndfile's words for some undecodable files
        msg = "format not recognised"
    return msg.removeprefix("Error : ").rstrip(".")


def resample(samples: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample [..., T] -> [..., T * target_sr / orig_sr]; identity when the rates match."""
    if orig_sr == target_sr:
        return samples
    return AF.resample(samples, orig_sr, target_sr)


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
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITE_FORMATS:
        known = ", ".join(WRITE_FORMATS)
        raise CodecError(f"Cannot write '{p}': unsupported extension '{p.suffix}' (use one of {known}).")
    if samples.dim() != 2 or samples.shape[-1] == 0:
        raise ValueError(f"expected non-empty [C, T] samples, got shape {tuple(samples.shape)}")
    fmt, subtype, rates = WRITE_FORMATS[ext]
    x = samples.detach().to("cpu", torch.float32)
    if rates is not None and sample_rate not in rates:
        x, sample_rate = resample(x, sample_rate, 48000), 48000
    x = torch.nan_to_num(x, nan=0.0).clamp(-1.0, 1.0)
    data = np.ascontiguousarray(x.numpy().T)  # [T, C]
    with atomic_write(p, force) as tmp:
        try:
            sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
            raise CodecError(f"Cannot write '{p}' ({_short(e, tmp)}).") from None
