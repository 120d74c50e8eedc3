"""A multilingual synthetic speech corpus for codec training, made offline.

Text: the translated strings of the system's gettext catalogs (``/usr/share/locale/<locale>/LC_MESSAGES``:
program messages, and the country, region, language and currency names of iso-codes), joined
into sentences of a few phrases. Speech, by ``engine``:

- ``espeak-ng`` (formant synthesis) in each catalog's language, with a seeded variant (male,
  female, klatt), rate and pitch per sentence;

      OUT/train/<language>/<n>.wav (+ .txt)    training languages
      OUT/heldout/<language>/<n>.wav (+ .txt)  HELD_OUT_LANGUAGES: evaluation only

- ``festival``, its installed diphone, unit-selection and HTS voices (``FESTIVAL_VOICES``: Czech,
  Finnish, Italian, Russian, Hindi, Marathi, Telugu, Catalan, English), each reading its own
  language. Their voices are resynthesized from recordings of people, so the waveform keeps
  a natural glottal fine structure that formant synthesis lacks.

      OUT/train/<voice>/<n>.wav (+ .txt)       training voices
      OUT/train/<voice>_f0x<f>/<n>.wav         ... with pitch factor f (``pitch_factors`` other than 1)
      OUT/heldout/<voice>/<n>.wav (+ .txt)     HELD_OUT_FESTIVAL_VOICES: evaluation only, own pitch

  ``pitch_factors`` (default 1: the voices' own pitch) make more voices of the same people: the
  diphone voices speak with their pitch targets scaled, their recorded pulses moved apart or
  together with the formants kept; the voices that ignore pitch targets (``FESTIVAL_OWN_PITCH``)
  only speak at factor 1.

``OUT/manifest.jsonl`` holds {"path", "text", "language", "voice", "split"} per clip. A sentence
the voice cannot speak (a character its rules lack) is skipped and reported.

Everything follows from the seed and the catalogs; files already there are kept, so an
interrupted run resumes.
"""

from __future__ import annotations

import gettext
import json
import random
import struct
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import CodecError
from ..files import atomic_write
from .tts import F0_FACTORS, SynthesisFailed, Voice, synthesize_once

LOCALE_DIR = Path("/usr/share/locale")
# espeak-ng voice -> gettext locale: languages with both a voice and enough catalog text on Debian
LANGUAGES: dict[str, str] = {
    "af": "af", "ar": "ar", "bg": "bg", "bn": "bn", "ca": "ca", "cs": "cs", "cy": "cy", "da": "da", "de": "de",
    "el": "el", "eo": "eo", "es": "es", "et": "et", "eu": "eu", "fa": "fa", "fi": "fi", "fr-fr": "fr", "ga": "ga",
    "he": "he", "hi": "hi", "hr": "hr", "hu": "hu", "hy": "hy", "id": "id", "is": "is", "it": "it",
    "ja": "ja", "ka": "ka", "kk": "kk", "ko": "ko", "lt": "lt", "lv": "lv", "mk": "mk", "ms": "ms", "nb": "nb",
    "nl": "nl", "pl": "pl", "pt": "pt", "pt-br": "pt_BR", "ro": "ro", "ru": "ru", "sk": "sk", "sl": "sl", "sq": "sq",
    "sr": "sr", "sv": "sv", "sw": "sw", "ta": "ta", "th": "th", "tr": "tr", "uk": "uk", "vi": "vi", "cmn": "zh_CN",
}
HELD_OUT_LANGUAGES = frozenset({"nl", "pl", "tr", "vi"})  # no training clip speaks these
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt4")
MIN_PHRASES = 20  # a language with fewer usable catalog phrases is skipped
WORDS_PER_SECOND = 1.6  # about how fast the voices speak these texts (long words, CJK): sizes the clip count
HELDOUT_CLIPS = 6  # per held-out language or festival voice
FESTIVAL_DIR = Path("/usr/share/festival/voices")
# festival voice -> (gettext locale, text encoding, Debian package)
FESTIVAL_VOICES: dict[str, tuple[str, str, str]] = {
    "czech_dita": ("cs", "iso-8859-2", "festvox-czech-dita"),
    "czech_krb": ("cs", "iso-8859-2", "festvox-czech-krb"),
    "czech_machac": ("cs", "iso-8859-2", "festvox-czech-machac"),
    "czech_ph": ("cs", "iso-8859-2", "festvox-czech-ph"),
    "suo_fi_lj_diphone": ("fi", "latin-1", "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": ("fi", "latin-1", "festvox-suopuhe-mv"),
    "lp_diphone": ("it", "latin-1", "festvox-italp16k"),
    "pc_diphone": ("it", "latin-1", "festvox-itapc16k"),
    "msu_ru_nsh_clunits": ("ru", "utf-8", "festvox-ru"),
    "hindi_NSK_diphone": ("hi", "utf-8", "festvox-hi-nsk"),
    "marathi_NSK_diphone": ("mr", "utf-8", "festvox-mr-nsk"),
    "telugu_NSK_diphone": ("te", "utf-8", "festvox-te-nsk"),
    "upc_ca_ona_hts": ("ca", "utf-8", "festvox-ca-ona-hts"),
    "ked_diphone": ("en", "utf-8", "festvox-kdlpc16k"),
}
HELD_OUT_FESTIVAL_VOICES = frozenset({"czech_ph", "hy_fi_mv_diphone", "lp_diphone"})  # evaluation only
FESTIVAL_OWN_PITCH = frozenset({"msu_ru_nsh_clunits", "upc_ca_ona_hts"})  # unit selection, HTS: no pitch targets
ENGLISH_LOCALE = "en_GB"  # English text for the English voices: the British catalogs (iso-codes names)


@dataclass(frozen=True)
class CorpusTotals:
    minutes: dict[str, float]  # speech per split ("train", "heldout")
    skipped: tuple[str, ...]  # clips (paths in the corpus) whose sentence the voice could not speak


@dataclass(frozen=True)
class Clip:
    path: Path
    voice: Voice
    text: str
    language: str


def _usable(text: str) -> bool:
    """Words only, starting with a letter: letters, combining marks, spaces and light punctuation (no
    format strings, options, paths or digits)."""
    return 1 <= len(text.split()) <= 12 and text[0].isalpha() and all(
        unicodedata.category(c)[0] in "LM" or c in " ,.'-?!" for c in text)


def catalog_phrases(locale: str, locale_dir: Path = LOCALE_DIR) -> list[str]:
    """The distinct usable translated strings of every catalog of ``locale``, sorted."""
    phrases = set()
    for catalog in sorted((locale_dir / locale / "LC_MESSAGES").glob("*.mo")):
        try:
            with open(catalog, "rb") as f:
                entries = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError, struct.error):  # a damaged catalog: skip it
            continue
        phrases.update(" ".join(v.split()) for k, v in entries.items() if k and isinstance(v, str) and _usable(v))
    return sorted(phrases)


def _sentence(rng: random.Random, phrases: list[str], min_words: int = 6) -> str:
    parts: list[str] = []
    while sum(len(p.split()) for p in parts) < min_words and len(parts) < 4:
        parts.append(rng.choice(phrases).rstrip(".!?"))
    return ", ".join(parts) + "."


def installed_festival_voices(voice_dir: Path = FESTIVAL_DIR) -> list[str]:
    """The ``FESTIVAL_VOICES`` installed under ``voice_dir`` (``<language>/<voice>/`` folders), sorted."""
    found = {p.name for p in voice_dir.glob("*/*") if p.is_dir()}
    return sorted(v for v in FESTIVAL_VOICES if v in found)


def plan_corpus(out: Path, minutes: float, seed: int = 0, locale_dir: Path = LOCALE_DIR, engine: str = "espeak-ng",
                festival_dir: Path = FESTIVAL_DIR, pitch_factors: tuple[float, ...] = (1.0,)) -> list[Clip]:
    """The clips of the corpus spoken by ``engine`` (what ``build_multilingual_corpus`` synthesizes), in order."""
    if not minutes > 0:
        raise CodecError(f"--minutes must be > 0, got {minutes}.")
    if out.exists() and not out.is_dir():
        raise CodecError(f"{out} exists and is not a folder.")
    low, high = F0_FACTORS
    if not pitch_factors or not all(low <= f <= high for f in pitch_factors):
        raise CodecError(f"pitch factors must lie in [{low:g}, {high:g}], got {list(pitch_factors)}.")
    if engine == "festival":
        return _plan_festival(out, minutes, seed, locale_dir, festival_dir, tuple(dict.fromkeys(pitch_factors)))
    if engine != "espeak-ng":
        raise CodecError(f"unknown engine {engine!r}; expected espeak-ng or festival.")
    if tuple(pitch_factors) != (1.0,):
        raise CodecError("pitch factors are for --engine festival (espeak-ng voices vary their pitch already).")
    phrases = {lang: catalog_phrases(locale, locale_dir) for lang, locale in LANGUAGES.items()}
    phrases = {lang: p for lang, p in phrases.items() if len(p) >= MIN_PHRASES}
    training = [lang for lang in phrases if lang not in HELD_OUT_LANGUAGES]
    if not training:
        raise CodecError(f"No language has {MIN_PHRASES} or more usable phrases in the gettext catalogs under "
                         f"{locale_dir} (install iso-codes or translated packages).")
    rng = random.Random(seed)
    per_language = max(1, round(minutes * 60 * WORDS_PER_SECOND / 9 / len(training)))  # ~9 words per sentence
    clips = []
    for lang in sorted(phrases):
        split = "heldout" if lang in HELD_OUT_LANGUAGES else "train"
        for n in range(HELDOUT_CLIPS if split == "heldout" else per_language):
            voice = Voice("espeak-ng", f"{lang}+{rng.choice(VARIANTS)}", rng.randrange(130, 195, 5),
                          rng.randrange(25, 80, 5))
            clips.append(Clip(out / split / lang / f"{n:04d}.wav", voice, _sentence(rng, phrases[lang]), lang))
    return clips


def _plan_festival(out: Path, minutes: float, seed: int, locale_dir: Path, festival_dir: Path,
                   pitch_factors: tuple[float, ...]) -> list[Clip]:
    voices = installed_festival_voices(festival_dir)
    if not voices:
        packages = " ".join(package for _, _, package in FESTIVAL_VOICES.values())
        raise CodecError(f"No festival voice of this corpus is installed under {festival_dir} "
                         f"(apt-get install festival {packages}).")
    locales = {FESTIVAL_VOICES[v][0] for v in voices}  # each locale's catalogs are read once
    catalogs = {locale: catalog_phrases(ENGLISH_LOCALE if locale == "en" else locale, locale_dir) for locale in locales}
    phrases: dict[str, list[str]] = {}
    for voice in voices:
        locale, encoding, _ = FESTIVAL_VOICES[voice]
        phrases[voice] = [p for p in catalogs[locale] if _encodable(p, encoding)]
    voices = [v for v in voices if len(phrases[v]) >= MIN_PHRASES]
    training = [v for v in voices if v not in HELD_OUT_FESTIVAL_VOICES]
    if not training:
        raise CodecError(f"No installed festival training voice has {MIN_PHRASES} or more usable phrases in the "
                         f"gettext catalogs under {locale_dir} (install iso-codes or translated packages).")

    def factors(name: str) -> tuple[float, ...]:
        if name in HELD_OUT_FESTIVAL_VOICES:
            return (1.0,)  # evaluation: the voice as recorded
        return tuple(f for f in pitch_factors if f == 1.0 or name not in FESTIVAL_OWN_PITCH)

    speakers = sum(len(factors(name)) for name in training)
    if not speakers:
        raise CodecError(f"None of the installed festival training voices follows pitch factors {list(pitch_factors)} "
                         f"(only {', '.join(sorted(FESTIVAL_OWN_PITCH))}: add 1 to the factors).")
    rng = random.Random(seed)
    per_voice = max(1, round(minutes * 60 * WORDS_PER_SECOND / 9 / speakers))
    clips = []
    for name in voices:
        locale, encoding, _ = FESTIVAL_VOICES[name]
        split = "heldout" if name in HELD_OUT_FESTIVAL_VOICES else "train"
        for factor in factors(name):
            voice = Voice("festival", name, encoding=encoding, f0_factor=factor)
            folder = out / split / (name + voice.pitch_suffix)
            for n in range(HELDOUT_CLIPS if split == "heldout" else per_voice):
                clips.append(Clip(folder / f"{n:04d}.wav", voice, _sentence(rng, phrases[name]), locale))
    return clips


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def build_multilingual_corpus(out: Path, minutes: float, seed: int = 0, workers: int = 2,
                              locale_dir: Path = LOCALE_DIR, advance: Callable[[], None] = lambda: None,
                              engine: str = "espeak-ng", festival_dir: Path = FESTIVAL_DIR,
                              pitch_factors: tuple[float, ...] = (1.0,)) -> CorpusTotals:
    """Synthesize about ``minutes`` of training speech with ``engine`` in the catalogs' languages (plus
    the held-out languages' or voices' clips)."""
    clips = plan_corpus(out, minutes, seed, locale_dir, engine, festival_dir, pitch_factors)

    def run(clip: Clip) -> float | None:
        try:
            seconds = synthesize_once(clip.voice, clip.text, clip.path)
        except SynthesisFailed:
            seconds = None
        advance()
        return seconds

    with ThreadPoolExecutor(workers) as pool:
        durations = list(pool.map(run, clips))
    rows = [{"path": str(c.path.relative_to(out)), "text": c.text, "language": c.language, "voice": c.voice.id,
             "split": c.path.parent.parent.name} for c in clips]
    made = [(row, seconds) for row, seconds in zip(rows, durations) if seconds is not None]
    if not made:
        raise CodecError(f"{engine} could not speak any sentence of the corpus (first: {clips[0].text[:40]!r}).")
    with atomic_write(out / "manifest.jsonl", force=True) as tmp:
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row, _ in made))
    minutes_per_split: dict[str, float] = {}
    for row, seconds in made:
        minutes_per_split[row["split"]] = minutes_per_split.get(row["split"], 0.0) + seconds / 60
    skipped = tuple(row["path"] for row, seconds in zip(rows, durations) if seconds is None)
    return CorpusTotals(minutes_per_split, skipped)
