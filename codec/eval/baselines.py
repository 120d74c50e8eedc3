"""Classic codecs (Opus, Codec2, MP3) as evaluation baselines, run through the real programs.

Every system the evaluation compares has ``name``, ``label``, ``nominal_kbps`` and
``code(audio) -> CodedClip``. A baseline writes the (mono) input to a temporary directory,
runs the encoder and the decoder as subprocesses (each timed separately, wall clock around
the subprocess only), and reads the result back. The decoded audio is resampled to the
input's rate and trimmed or zero-padded to the input's length (codecs pad to whole frames);
the codec's delay is kept, for ``codec.eval.alignment`` to remove. ``num_bytes`` is the
size of the real compressed file.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import soundfile as sf
import torch

from ..audio.io import Audio, resample, to_channels
from ..errors import CodecError

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MP3_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
CODEC2_FRAME_MS = {"3200": 20, "2400": 20, "1600": 40, "1400": 40, "1300": 40, "1200": 40,
                   "700C": 40, "450": 40}  # mode -> frame duration
CODEC2_MODES = tuple(CODEC2_FRAME_MS)
DEFAULTS = {"opus": ["6", "12"], "codec2": ["3200", "1300"], "mp3": ["16", "32"]}
_CODEC2_RATE = 8000
_CODEC2_FRAME = 320  # 40 ms at 8 kHz: a whole number of frames for every mode
_MAX_LENGTH_ERROR_SECONDS = 0.1  # decoded vs input length beyond this: the tool misbehaved


@dataclass(frozen=True)
class CodedClip:
    audio: Audio  # decoded, mono [1, T], at the input's sample rate
    num_bytes: int  # size of the real compressed file / bitstream
    encode_seconds: float
    decode_seconds: float
    payload_bytes: int | None = None  # codec payload without container overhead, when known


@runtime_checkable
class CodecSystem(Protocol):
    """Anything the evaluation compares: a baseline here, or a neural model (systems.py)."""

    name: str  # "opus", "codec2", "mp3", a model name
    label: str  # "Opus 6 kbps", "Codec2 3200", "speech16k 6 kbps"
    nominal_kbps: float

    def code(self, audio: Audio) -> CodedClip: ...


@functools.lru_cache(maxsize=8)
def _ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """Names of the audio encoders the ffmpeg binary at ``ffmpeg`` was built with."""
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    fields = (line.split() for line in out.splitlines())
    return frozenset(f[1] for f in fields if len(f) >= 2 and f[0].startswith("A"))


def check_tools() -> dict[str, bool]:
    """Which external programs (and ffmpeg encoders) are available on PATH."""
    ffmpeg = shutil.which("ffmpeg")
    encoders = _ffmpeg_encoders(ffmpeg) if ffmpeg else frozenset()
    return {"ffmpeg": ffmpeg is not None, "libopus": "libopus" in encoders,
            "libmp3lame": "libmp3lame" in encoders,
            "c2enc": shutil.which("c2enc") is not None, "c2dec": shutil.which("c2dec") is not None}


def available_baselines() -> dict[str, bool]:
    """Baseline name -> whether the programs it needs are installed."""
    tools = check_tools()
    return {"opus": tools["libopus"], "codec2": tools["c2enc"] and tools["c2dec"],
            "mp3": tools["libmp3lame"]}


_MISSING = {"opus": "ffmpeg with libopus was not found; the Opus baseline is skipped.",
            "codec2": "c2enc/c2dec (codec2) were not found; the Codec2 baseline is skipped.",
            "mp3": "ffmpeg with libmp3lame was not found; the MP3 baseline is skipped."}


def _run(cmd: list[str]) -> float:
    """Run a tool; return its wall-clock seconds, or raise CodecError with its last stderr line."""
    tool, exe = cmd[0], shutil.which(cmd[0])
    if exe is None:
        raise CodecError(f"{tool} was not found on PATH; install it to use this baseline.")
    start = time.perf_counter()
    try:
        done = subprocess.run([exe, *cmd[1:]], stdin=subprocess.DEVNULL, capture_output=True)
    except OSError as e:
        raise CodecError(f"{tool} could not be run ({e.strerror or e}).") from None
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        last = lines[-1].strip().rstrip(".") if lines else "no error message"
        raise CodecError(f"{tool} failed with exit code {done.returncode}: {last}.")
    return seconds


def _mono(audio: Audio) -> torch.Tensor:
    """[C, T] -> [T] float32 mono."""
    return to_channels(audio.samples.detach().to("cpu", torch.float32), 1)[0]


def _rate_at_least(sample_rate: int, rates: tuple[int, ...]) -> int:
    """The smallest supported rate >= ``sample_rate`` (the highest one above all of them)."""
    return next((r for r in rates if r >= sample_rate), rates[-1])


def _finish(decoded: torch.Tensor, rate: int, audio: Audio) -> Audio:
    """[T'] at ``rate`` -> mono Audio at the input's rate and length."""
    x = resample(decoded.to(torch.float32), rate, audio.sample_rate)
    n = audio.num_samples
    if abs(len(x) - n) > _MAX_LENGTH_ERROR_SECONDS * audio.sample_rate + 0.1 * n:
        raise CodecError(f"The decoder returned {len(x) / audio.sample_rate:.2f} s of audio "
                         f"for a {audio.duration:.2f} s input.")
    x = torch.nn.functional.pad(x[:n], (0, max(0, n - len(x))))
    return Audio(x[None].contiguous(), audio.sample_rate)


def ogg_payload_bytes(path: Path) -> int:
    """Bytes of packet data on an Ogg file's audio pages (page headers and the header
    pages, granule position 0, excluded)."""
    data, pos, total = path.read_bytes(), 0, 0
    while pos + 27 <= len(data) and data[pos:pos + 4] == b"OggS":
        granule = int.from_bytes(data[pos + 6:pos + 14], "little", signed=True)
        nseg = data[pos + 26]
        size = sum(data[pos + 27:pos + 27 + nseg])
        total += size if granule != 0 else 0
        pos += 27 + nseg + size
    return total


def _ffmpeg_code(audio: Audio, rates: tuple[int, ...], suffix: str, encoder: list[str]) -> CodedClip:
    """Encode the mono input with ffmpeg's ``encoder`` arguments into a ``suffix`` file at
    the smallest of ``rates`` at or above the input's rate, then decode it back to WAV."""
    rate = _rate_at_least(audio.sample_rate, rates)
    x = resample(_mono(audio), audio.sample_rate, rate).clamp(-1.0, 1.0).numpy()
    quiet = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    with tempfile.TemporaryDirectory(prefix="codec-baseline-") as tmp:
        src, coded, out = Path(tmp, "in.wav"), Path(tmp, "coded" + suffix), Path(tmp, "out.wav")
        sf.write(src, x, rate, subtype="FLOAT")
        enc = _run([*quiet, "-i", str(src), *encoder, "-map_metadata", "-1",
                    "-fflags", "+bitexact", "-flags:a", "+bitexact", str(coded)])
        dec = _run([*quiet, "-i", str(coded), "-c:a", "pcm_f32le", str(out)])
        y, out_rate = sf.read(out, dtype="float32", always_2d=True)
        payload = ogg_payload_bytes(coded) if suffix == ".opus" else None
        return CodedClip(_finish(torch.from_numpy(y.mean(axis=1)), out_rate, audio),
                         coded.stat().st_size, enc, dec, payload)


class OpusBaseline:
    """libopus in speech mode (``-application voip``) with hard CBR (``-vbr off``), so the
    actual bitrate is predictable: the requested one plus Ogg overhead (page headers with a
    lacing byte per 20 ms packet, and the two header pages: ~1 kbps on 3-4 s clips). Input is resampled
    to the smallest rate libopus accepts at or above its rate (16 kHz stays 16 kHz;
    44.1 kHz goes to 48 kHz); ffmpeg decodes at 48 kHz, trimming the encoder's pre-skip.
    ``payload_bytes`` counts the Opus packets only."""

    name = "opus"

    def __init__(self, kbps: float) -> None:
        if not 6 <= kbps <= 510:
            raise CodecError(f"Opus bitrate {kbps:g} kbps is outside the supported 6-510 kbps.")
        self.nominal_kbps, self.label = float(kbps), f"Opus {kbps:g} kbps"

    def code(self, audio: Audio) -> CodedClip:
        bps = str(round(self.nominal_kbps * 1000))
        return _ffmpeg_code(audio, OPUS_RATES, ".opus", ["-c:a", "libopus", "-b:a", bps,
                                                         "-vbr", "off", "-application", "voip"])


class MP3Baseline:
    """LAME MP3 at a constant bitrate, without ID3 tags; the LAME tag lets ffmpeg remove
    the encoder delay and padding. Input is resampled to the smallest MP3 rate at or above
    its rate; LAME snaps a bitrate that MPEG version lacks to the nearest legal one."""

    name = "mp3"

    def __init__(self, kbps: float) -> None:
        if kbps not in MP3_KBPS:
            raise CodecError(f"MP3 bitrate {kbps:g} kbps is not one of {', '.join(map(str, MP3_KBPS))}.")
        self.nominal_kbps, self.label = float(kbps), f"MP3 {kbps:g} kbps"

    def code(self, audio: Audio) -> CodedClip:
        return _ffmpeg_code(audio, MP3_RATES, ".mp3", ["-c:a", "libmp3lame", "-b:a", f"{int(self.nominal_kbps)}k",
                                                       "-id3v2_version", "0", "-write_id3v1", "0"])


class Codec2Baseline:
    """Codec2 through ``c2enc``/``c2dec`` on 8 kHz 16-bit raw mono. The input is padded
    with zeros to whole 40 ms frames. ``num_bytes`` is the headerless ``.bit`` file, in
    which c2enc rounds every frame up to whole bytes (1300 uses 1.4 kbps on disk, 700C
    0.8 kbps); ``payload_bytes`` is the same frames packed bit-tight (the nominal rate)."""

    name = "codec2"

    def __init__(self, mode: str) -> None:
        mode = str(mode).upper()
        if mode not in CODEC2_MODES:
            raise CodecError(f"Unknown Codec2 mode '{mode}'; use one of {', '.join(CODEC2_MODES)}.")
        self.mode, self.label = mode, f"Codec2 {mode}"
        self.nominal_kbps = int(mode.rstrip("C")) / 1000

    def code(self, audio: Audio) -> CodedClip:
        x = resample(_mono(audio), audio.sample_rate, _CODEC2_RATE)
        x = torch.nn.functional.pad(x, (0, -len(x) % _CODEC2_FRAME))
        pcm = (x.clamp(-1.0, 1.0).numpy() * 32767).round().astype("<i2")
        with tempfile.TemporaryDirectory(prefix="codec-baseline-") as tmp:
            src, bits, out = Path(tmp, "in.raw"), Path(tmp, "out.bit"), Path(tmp, "out.raw")
            pcm.tofile(src)
            enc = _run(["c2enc", self.mode, str(src), str(bits)])
            dec = _run(["c2dec", self.mode, str(bits), str(out)])
            y = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768
            size = bits.stat().st_size
        frame_bits = round(self.nominal_kbps * CODEC2_FRAME_MS[self.mode])
        frames = size // -(-frame_bits // 8)
        payload = -(-frames * frame_bits // 8)
        return CodedClip(_finish(torch.from_numpy(y), _CODEC2_RATE, audio), size, enc, dec, payload)


def _kbps(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CodecError(f"Bitrate '{value}' is not a number of kbps.") from None


_FACTORIES = {"opus": lambda v: OpusBaseline(_kbps(v)), "codec2": Codec2Baseline,
              "mp3": lambda v: MP3Baseline(_kbps(v))}


def parse_spec(spec: str) -> list[CodecSystem]:
    """One CLI spec -> baselines: ``opus`` (6, 12 kbps), ``opus:6,12,16``, ``codec2``
    (3200, 1300), ``codec2:3200,700C``, ``mp3`` (16, 32 kbps), ``mp3:16,32``."""
    name, sep, values = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _FACTORIES:
        raise CodecError(f"Unknown baseline '{name}' in '{spec}'; use one of {', '.join(_FACTORIES)}.")
    items = [v.strip() for v in values.split(",")] if sep else DEFAULTS[name]
    if not all(items):
        raise CodecError(f"Baseline spec '{spec}' is malformed; write e.g. '{name}:{','.join(DEFAULTS[name])}'.")
    return [_FACTORIES[name](v) for v in items]


def make_baselines(specs: list[str]) -> tuple[list[CodecSystem], list[str]]:
    """Parse every spec (errors: CodecError) and keep the baselines whose programs are
    installed; the others give one warning sentence per baseline name. Duplicates are dropped."""
    parsed = [b for spec in specs for b in parse_spec(spec)]
    available = available_baselines() if parsed else {}
    baselines: dict[str, CodecSystem] = {}
    for b in parsed:
        if available[b.name]:
            baselines.setdefault(b.label, b)
    warnings = [_MISSING[name] for name in dict.fromkeys(b.name for b in parsed) if not available[name]]
    return list(baselines.values()), warnings
