"""Offline speech synthesis with the TTS engines that install from Debian packages.

    apt-get install espeak-ng flite festival      (festival brings the kal_diphone voice)

A ``Voice`` is an engine, a voice name and, for espeak-ng, a speaking rate (words per minute)
and pitch (0-99); ``synthesize`` writes 16 kHz mono 16-bit audio. ``VOICES`` lists the voices
used for synthetic corpora; those in ``HELD_OUT`` are kept out of training, for evaluation.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..audio.io import read_audio, resample
from ..errors import CodecError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng", "flite" or "festival"
    name: str  # espeak-ng voice (+variant), flite voice, festival voice
    rate: int = 160  # espeak-ng words per minute
    pitch: int = 50  # espeak-ng pitch, 0-99

    @property
    def id(self) -> str:
        base = f"{self.engine}_{self.name}".replace("+", "-")
        return f"{base}_r{self.rate}_p{self.pitch}" if self.engine == "espeak-ng" else base

    def command(self, text: str, out: Path) -> list[str]:
        if self.engine == "espeak-ng":
            return ["espeak-ng", "-v", self.name, "-s", str(self.rate), "-p", str(self.pitch), "-w", str(out), text]
        if self.engine == "flite":
            return ["flite", "-voice", self.name, "-t", text, "-o", str(out)]
        if self.engine == "festival":
            return ["text2wave", "-eval", f"(voice_{self.name})", "-o", str(out)]
        raise ValueError(f"unknown TTS engine {self.engine!r}")


def _espeak(name: str, rates=(140, 175), pitches=(35, 65)) -> list[Voice]:
    return [Voice("espeak-ng", name, r, p) for r in rates for p in pitches]


VOICES: tuple[Voice, ...] = (
    *_espeak("en-us+m1"), *_espeak("en-us+f2"), *_espeak("en-gb+m3"), *_espeak("en-gb-scotland+f4"),
    *_espeak("en-gb-x-rp+m7"), *_espeak("en-029+f1"), *_espeak("en-gb-x-gbclan+m2"),
    *_espeak("en-gb-x-gbcwmd+f3", rates=(155,), pitches=(50,)), *_espeak("en-us+klatt", rates=(160,), pitches=(45,)),
    Voice("flite", "kal"), Voice("flite", "awb"), Voice("flite", "rms"), Voice("flite", "slt"), Voice("flite", "kal16"),
    Voice("festival", "kal_diphone"),
)
HELD_OUT: frozenset[str] = frozenset({  # voices no training utterance uses: the evaluation speakers
    "espeak-ng_en-gb-x-gbcwmd-f3_r155_p50", "espeak-ng_en-us-klatt_r160_p45", "flite_slt",
})


def available_engines() -> set[str]:
    commands = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
    return {engine for engine, command in commands.items() if shutil.which(command)}


def synthesize(voice: Voice, text: str, out: Path) -> float:
    """Speak ``text`` with ``voice`` into ``out`` (16 kHz mono, 16-bit); returns its duration in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run(voice.command(text, raw), input=text if voice.engine == "festival" else None,
                           capture_output=True, text=True, timeout=120, check=True)
        except FileNotFoundError:
            raise CodecError(f"{voice.engine} is not installed (apt-get install {voice.engine}).") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise CodecError(f"{voice.engine} failed on {text[:40]!r} ({' '.join(str(e).split())[:200]}).") from None
        audio = read_audio(raw)
    samples = resample(audio.samples.mean(0, keepdim=True), audio.sample_rate, SAMPLE_RATE)
    peak = float(samples.abs().max())
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    sf.write(out, samples[0].numpy(), SAMPLE_RATE, subtype="PCM_16")
    return samples.shape[-1] / SAMPLE_RATE

