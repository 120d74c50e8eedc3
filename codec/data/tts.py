"""Offline speech synthesis with the TTS engines that install from Debian packages.

    apt-get install espeak-ng flite festival      (festival brings the kal_diphone voice)

A ``Voice`` is an engine, a voice name, for espeak-ng a speaking rate (words per minute) and
pitch (0-99), and for festival the text encoding its voice reads (Czech ISO-8859-2, Finnish and
Italian Latin-1) and a factor on its pitch targets (diphone voices follow it: their recorded
pulses are moved apart or together, formants kept; unit-selection and HTS voices ignore it);
``synthesize`` writes 16 kHz mono 16-bit audio. ``VOICES`` lists the voices
used for synthetic corpora; those in ``HELD_OUT`` are kept out of training, for evaluation.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..audio.io import read_audio, resample
from ..errors import CodecError

SAMPLE_RATE = 16000
F0_FACTORS = (0.5, 2.0)  # the pitch factors a festival voice takes (lowest, highest)


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng", "flite" or "festival"
    name: str  # espeak-ng voice (+variant), flite voice, festival voice
    rate: int = 160  # espeak-ng words per minute
    pitch: int = 50  # espeak-ng pitch, 0-99
    encoding: str = "utf-8"  # festival: how the voice wants its text
    f0_factor: float = 1.0  # festival: pitch targets times this

    def __post_init__(self) -> None:
        if not F0_FACTORS[0] <= self.f0_factor <= F0_FACTORS[1]:
            raise ValueError(f"f0_factor must lie in [{F0_FACTORS[0]:g}, {F0_FACTORS[1]:g}], got {self.f0_factor}")

    @property
    def pitch_suffix(self) -> str:
        """"" at the voice's own pitch, else "_f0x<factor>" (in ids and corpus folder names)."""
        return "" if self.f0_factor == 1.0 else f"_f0x{self.f0_factor:g}"

    @property
    def id(self) -> str:
        base = f"{self.engine}_{self.name}".replace("+", "-")
        return f"{base}_r{self.rate}_p{self.pitch}" if self.engine == "espeak-ng" else base + self.pitch_suffix

    def command(self, text: str, out: Path) -> list[str]:
        if self.engine == "espeak-ng":
            return ["espeak-ng", "-v", self.name, "-s", str(self.rate), "-p", str(self.pitch), "-w", str(out), text]
        if self.engine == "flite":
            return ["flite", "-voice", self.name, "-t", text, "-o", str(out)]
        if self.engine == "festival":
            pitch = [] if self.f0_factor == 1.0 else ["-eval", _SCALED_F0.format(factor=self.f0_factor)]
            return ["text2wave", "-eval", f"(voice_{self.name})", *pitch, "-o", str(out)]
        raise ValueError(f"unknown TTS engine {self.engine!r}")


# festival: wrap the waveform module so that every pitch target of the utterance is scaled first
_SCALED_F0 = """(begin (set! unscaled_wave_synth Wave_Synth)
 (define (Wave_Synth utt)
  (mapcar (lambda (target) (item.set_feat target "f0" (* {factor} (item.feat target "f0"))))
          (utt.relation.items utt 'Target))
  (unscaled_wave_synth utt)))"""


ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
                   "klatt4", "Andy", "Annie", "Alex", "Denis", "Edward", "Gene", "Linda", "Michael", "Paul", "Rob",
                   "Steph", "grandma", "grandpa", "male3", "female3", "shelby")
HELD_OUT: frozenset[str] = frozenset({  # voices no training utterance uses: the evaluation speakers
    "espeak-ng_en-gb-x-gbcwmd-f3_r155_p50", "espeak-ng_en-us-klatt_r160_p45", "flite_slt",
})


def _espeak_voices(count: int, seed: int = 7) -> list[Voice]:
    """``count`` espeak-ng accent+variant pairs at seeded rates (130-190 wpm) and pitches (25-75), none of them
    an accent+variant pair that a held-out voice uses."""
    rng = random.Random(seed)
    held = {("en-gb-x-gbcwmd", "f3"), ("en-us", "klatt")}
    pairs = [(a, v) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS if (a, v) not in held]
    rng.shuffle(pairs)
    return [Voice("espeak-ng", f"{a}+{v}", rng.randrange(130, 195, 5), rng.randrange(25, 80, 5)) for a, v in pairs[:count]]


VOICES: tuple[Voice, ...] = (
    *_espeak_voices(72),
    Voice("flite", "kal"), Voice("flite", "awb"), Voice("flite", "rms"), Voice("flite", "kal16"),
    Voice("festival", "kal_diphone"),
    Voice("espeak-ng", "en-gb-x-gbcwmd+f3", 155, 50), Voice("espeak-ng", "en-us+klatt", 160, 45), Voice("flite", "slt"),
)


def available_engines() -> set[str]:
    commands = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
    return {engine for engine, command in commands.items() if shutil.which(command)}


class SynthesisFailed(CodecError):
    """The engine ran but could not speak this text (a character or word its voice has no rule for)."""


def synthesize(voice: Voice, text: str, out: Path) -> float:
    """Speak ``text`` with ``voice`` into ``out`` (16 kHz mono, 16-bit); returns its duration in seconds.
    Raises ``SynthesisFailed`` when the engine fails on the text or writes no audio."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run(voice.command(text, raw), input=text.encode(voice.encoding) if voice.engine == "festival"
                           else None, capture_output=True, timeout=120, check=True)
        except FileNotFoundError:
            raise CodecError(f"{voice.engine} is not installed (apt-get install {voice.engine}).") from None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            detail = " ".join(str(e).split())[:200]
            raise SynthesisFailed(f"{voice.engine} failed on {text[:40]!r} ({detail}).") from None
        if not raw.is_file() or raw.stat().st_size <= 44:  # 44 bytes: a WAV header and no samples
            raise SynthesisFailed(f"{voice.engine} ({voice.name}) wrote no audio for {text[:40]!r}.")
        audio = read_audio(raw)
    samples = resample(audio.samples.mean(0, keepdim=True), audio.sample_rate, SAMPLE_RATE)
    peak = float(samples.abs().max())
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    sf.write(out, samples[0].numpy(), SAMPLE_RATE, subtype="PCM_16")
    return samples.shape[-1] / SAMPLE_RATE



def synthesize_once(voice: Voice, text: str, out: Path) -> float:
    """``synthesize`` into ``out`` (via a hidden temporary file, with ``text`` beside it as .txt) unless
    ``out`` is already there: resumable corpora. Returns the clip's duration in seconds."""
    if out.is_file():
        return sf.info(out).duration
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}")
    seconds = synthesize(voice, text, tmp)
    tmp.replace(out)
    out.with_suffix(".txt").write_text(text + "\n")
    return seconds
