"""Reading audio files block by block, with the checks that make a bad file a clear error.

Reading goes through soundfile (libsndfile), which detects the format from the file's
content, not its name. ``open_audio(path)`` gives an ``AudioReader``: the sample rate and
channels at once, then blocks [C, n] of float32 samples read from disk as they are needed,
so a file of any length is read in bounded memory. Every block is checked as it is read
(NaN or infinite samples); the end of the file is checked when it is reached (no samples,
fewer samples than the header declares). Every failure is a ``CodecError`` with one
sentence that names the file.

libsndfile silently reads what is there, so two container checks run before it:

- RIFF/RIFX/RF64 WAV: a data chunk that claims more bytes than the file holds is a cut file.
  Streaming writers write the header before they know the length and leave the data size
  as 0 or 0xFFFFFFFF; such a file is read to its end (libsndfile itself would read nothing
  for a size of 0, so the reader shows it the size the file really holds).
- Ogg (Vorbis, Opus): the last page must be a complete end-of-stream page.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import torch

from codec.errors import CodecError
from codec.files import check_readable

READ_FRAMES = 1 << 16  # frames per block
LOSSY_FORMATS = frozenset({"OGG", "MP3"})  # their frame counts may be estimates
_LIBSNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError)


def libsndfile_message(e: BaseException, p: Path | None = None) -> str:
    """A one-line, period-free description of a library exception (without the path)."""
    msg = " ".join(str(e).split()) or type(e).__name__
    if p is not None:
        msg = msg.removeprefix(f"Error opening {str(p)!r}: ")
    if "does not exist" in msg:  # libsndfile's words for some undecodable files
        msg = "format not recognised"
    return msg.removeprefix("Error : ").rstrip(".")


class AudioReader:
    """An audio file open for reading: ``sample_rate``, ``channels``, ``frames`` (as the header
    declares them; an estimate for Ogg/MP3) and ``blocks()``. Use ``open_audio``."""

    def __init__(self, path: str | os.PathLike) -> None:
        p = check_readable(path)
        self.path = p
        try:
            patches = _check_riff(p)
            _check_ogg(p)
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            raise CodecError(f"Input file '{p}' cannot be read ({why}).") from None
        source: str | _PatchedFile = _PatchedFile(p, patches) if patches else str(p)
        try:
            self._file = sf.SoundFile(source)
        except _LIBSNDFILE_ERRORS as e:
            if isinstance(source, _PatchedFile):
                source.close()
            raise CodecError(f"Input file '{p}' is not a readable audio file ({libsndfile_message(e, p)}).") from None
        self._patched = source if isinstance(source, _PatchedFile) else None
        self.sample_rate: int = int(self._file.samplerate)
        self.channels: int = int(self._file.channels)
        self.frames: int = int(self._file.frames)  # declared by the header
        self.format: str = self._file.format
        self.num_samples: int | None = None  # frames read by the last complete pass of blocks()

    @property
    def exact_frames(self) -> int | None:
        """The frames ``blocks`` will give, where the header says it exactly (not Ogg/MP3);
        a file holding fewer makes ``blocks`` raise at its end."""
        return None if self.format in LOSSY_FORMATS or self.frames == 0 else self.frames

    def blocks(self, frames: int = READ_FRAMES) -> Iterator[torch.Tensor]:
        """Blocks [C, <= frames] float32 from the start of the file to its end; raises a
        ``CodecError`` at a bad block, or at the end if the file held no or too few samples."""
        p = self.path
        count = 0
        while len(block := self._read(frames, first=count == 0)):  # [n, C]
            if not np.isfinite(block).all():  # a mask of one block, never of the file
                raise CodecError(f"Input file '{p}' contains NaN or infinite samples.")
            count += len(block)
            yield torch.from_numpy(np.ascontiguousarray(block.T))
        if count == 0:
            raise CodecError(f"Input file '{p}' contains no audio samples.")
        slack = max(self.frames // 100, 4608) if self.format in LOSSY_FORMATS else 0
        if count < self.frames - slack:
            raise CodecError(f"Input file '{p}' is truncated (its header declares {self.frames} "
                             f"samples but only {count} could be decoded).")
        self.num_samples = count

    def _read(self, frames: int, first: bool) -> np.ndarray:
        """The next [<= frames, C] samples; ``first``: from the start of the file."""
        try:
            if first and self._file.tell() != 0:
                self._file.seek(0)
            return self._file.read(frames, dtype="float32", always_2d=True)
        except _LIBSNDFILE_ERRORS as e:
            p = self.path
            raise CodecError(f"Input file '{p}' is truncated or corrupted ({libsndfile_message(e, p)}).") from None

    def read(self) -> torch.Tensor:
        """The whole file [C, T], filled block by block into one tensor where the header's length
        is exact and plausible (a header may lie: at most 32 x the file's size in float32, which
        FLAC reaches only on long silence), else the blocks are joined at the end."""
        frames = self.exact_frames or 0
        capacity = frames if frames * self.channels * 4 <= max(1 << 26, 32 * self.path.stat().st_size) else 0
        try:
            out = torch.empty(self.channels, capacity)
            pos, rest = 0, []  # rest: anything beyond ``capacity``
            for block in self.blocks():
                n = block.shape[-1]
                if not rest and pos + n <= capacity:
                    out[:, pos : pos + n] = block
                    pos += n
                else:
                    rest.append(block)
            return torch.cat([out[:, :pos], *rest], dim=-1) if rest or pos < capacity else out
        except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as RuntimeError
            if isinstance(e, RuntimeError) and "alloc" not in str(e):
                raise
            raise CodecError(f"Input file '{self.path}' is too large to read into memory.") from None

    def close(self) -> None:
        self._file.close()
        if self._patched is not None:
            self._patched.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_audio(path: str | os.PathLike) -> AudioReader:
    """Open any WAV/FLAC/OGG/Opus/MP3 file (format by content) for reading block by block:
    ``with open_audio(path) as reader: for block in reader.blocks(): ...``."""
    return AudioReader(path)


class _PatchedFile(io.RawIOBase):
    """A read-only view of a file with a few bytes replaced (offset -> bytes)."""

    def __init__(self, path: Path, patches: dict[int, bytes]) -> None:
        super().__init__()
        self._f = open(path, "rb")
        self._patches = patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        pos = self._f.tell()
        n = self._f.readinto(buffer)
        for offset, data in self._patches.items():
            lo, hi = max(offset, pos), min(offset + len(data), pos + n)
            if lo < hi:
                buffer[lo - pos : hi - pos] = data[lo - offset : hi - offset]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _check_riff(p: Path) -> dict[int, bytes]:
    """Raise if a RIFF/RIFX/RF64 file's data chunk claims more bytes than the file holds.

    Returns the byte patches that make libsndfile read a streamed WAV (data size 0 followed by
    audio up to the end of the file): the real size in place of the 0. Else no patches.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:] != b"WAVE":
            return {}
        endian = ">" if head[:4] == b"RIFX" else "<"
        ds64_data: int | None = None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack(endian + "4sI", f.read(8))
            if cid == b"ds64" and csize >= 16:
                ds64_data = struct.unpack("<Q", f.read(16)[8:16])[0]
            if cid == b"data":
                available = size - pos - 8
                if head[:4] == b"RF64" and csize == 0xFFFFFFFF and ds64_data is not None:
                    csize = ds64_data
                elif csize == 0xFFFFFFFF:
                    return {}  # streamed WAV: libsndfile reads to the end of the file
                elif csize == 0:
                    if available == 0 or _chunks_fill(f, pos + 8, size, endian):
                        return {}  # an empty data chunk (libsndfile: no samples)
                    return {pos + 4: struct.pack(endian + "I", min(available, 0xFFFFFFFE))}
                if csize > available:
                    raise CodecError(f"Input file '{p}' is truncated (its data chunk declares "
                                     f"{csize} bytes but only {available} are present).")
                return {}
            nxt = pos + 8 + csize
            if csize % 2:  # chunks are padded to even length, unless the writer forgot
                f.seek(nxt)
                unpadded, padded = (b := f.read(5))[:4], b[1:]
                if _is_chunk_id(padded) or not _is_chunk_id(unpadded):
                    nxt += 1
            pos = nxt
        if pos > size:
            raise CodecError(f"Input file '{p}' is truncated (a chunk ends past the end of the file).")
    return {}


def _chunks_fill(f: io.BufferedReader, pos: int, size: int, endian: str) -> bool:
    """Whether the bytes from ``pos`` to the end are whole chunks (id, size, even-padded data)."""
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack(endian + "4sI", f.read(8))
        if not _is_chunk_id(cid):
            return False
        pos += 8 + csize + csize % 2
    return pos == size or pos == size + 1


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
