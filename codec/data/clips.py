"""What a corpus reader returns, and the small helpers all readers share.

A reader turns a corpus folder into lhotse cuts (one cut per audio file, with its
transcript and speaker as a supervision where the corpus has them). The training /
validation split is made later, in ``manifests.py``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from lhotse.cut import Cut, MonoCut, MultiCut

from codec.errors import CodecError

from .config import DataConfig

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
DEV_PARTS = ("dev-clean", "dev-clean-2", "dev-other")  # LibriSpeech/LibriTTS validation parts, best first

# corpus -> (its name in messages, the layout a user must provide)
LAYOUTS: dict[str, tuple[str, str]] = {
    "librispeech": ("LibriSpeech", "folders such as train-clean-100/<speaker>/<chapter>/*.flac "
                                   "with <speaker>-<chapter>.trans.txt"),
    "libritts": ("LibriTTS", "folders such as train-clean-100/<speaker>/<chapter>/*.wav "
                             "with <speaker>_<chapter>.trans.tsv and .book.tsv"),
    "vctk": ("VCTK", "wav48_silence_trimmed/<speaker>/<speaker>_<id>_mic1.flac "
                     "and txt/<speaker>/<speaker>_<id>.txt"),
    "ljspeech": ("LJSpeech", "metadata.csv and wavs/LJ*.wav"),
    "commonvoice": ("Common Voice", "<language>/clips/*.mp3 with <language>/train.tsv and dev.tsv"),
    "mls": ("Multilingual LibriSpeech", "mls_<language>/{train,dev,test}/transcripts.txt "
                                        "with audio/<speaker>/<book>/<id>.flac or .opus"),
    "folder": ("an audio folder", "audio files (*.wav, *.flac, *.ogg, *.opus, *.mp3) in it or its sub-folders"),
    "devspeech": ("devspeech", "manifest.jsonl with one JSON object (path, text, speaker, "
                               "sample_rate, num_samples) per clip"),
}

# language names (as in MLS folder names) <-> codes (as in Common Voice folder names)
LANGUAGE_CODES = {"english": "en", "german": "de", "dutch": "nl", "french": "fr", "spanish": "es",
                  "italian": "it", "portuguese": "pt", "polish": "pl"}


@dataclass(frozen=True)
class CorpusClips:
    """All usable clips of a corpus: its training pool and, where it has one, its own dev split."""

    train: CutSet
    dev: CutSet | None = None
    origin: str = ""  # the parts they came from, for messages: "train-clean-100 for training, dev-clean for validation"


def parts_origin(train: Sequence[str], dev: str | None) -> str:
    """``CorpusClips.origin`` of a corpus read from named parts (or splits)."""
    return f"{', '.join(train)} for training" + (f", {dev} for validation" if dev else "")


def not_like(corpus: str, root: Path) -> CodecError:
    """The error for a folder that lacks the corpus' layout."""
    name, layout = LAYOUTS[corpus]
    return CodecError(f"'{root}' does not look like {name}: expected {layout}.")


def child_if_missing(root: Path, looks_right: bool, names: Sequence[str]) -> Path:
    """``root``, or its child folder named like the corpus archive (e.g. LibriSpeech/) when
    ``root`` itself lacks the layout: users often pass the folder they extracted into."""
    if looks_right:
        return root
    return next((root / n for n in names if (root / n).is_dir()), root)


def language_names(language: str) -> set[str]:
    """A language as all the names the corpora use for it: {"en", "english"} for "en" or "English"."""
    lang = language.strip().lower()
    names = {lang}
    names |= {code.lower() for name, code in LANGUAGE_CODES.items() if name == lang}
    names |= {name for name, code in LANGUAGE_CODES.items() if code.lower() == lang}
    return names


def file_recording(path: Path, recording_id: str) -> Recording | None:
    """A Recording from the file's header (soundfile), or None (logged) if it cannot be read."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as e:
        log.warning("skipping unreadable audio file %s (%s)", path, " ".join(str(e).split()))
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        log.warning("skipping audio file without samples: %s", path)
        return None
    return Recording(
        id=recording_id,
        sources=[AudioSource(type="file", channels=list(range(info.channels)), source=str(path))],
        sampling_rate=int(info.samplerate), num_samples=int(info.frames), duration=info.frames / info.samplerate,
    )


def scan_recordings(files: Sequence[tuple[Path, str]]) -> list[Recording | None]:
    """``file_recording`` for many (path, recording id) pairs, in order, reading headers in threads."""
    workers = min(16, os.cpu_count() or 1)
    if len(files) < 64 or workers == 1:
        return [file_recording(p, i) for p, i in files]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda f: file_recording(*f), files))


def supervision(recording: Recording, text: str | None, speaker: str | None,
                language: str | None = None) -> SupervisionSegment:
    """One supervision spanning the whole recording."""
    return SupervisionSegment(id=recording.id, recording_id=recording.id, start=0.0, duration=recording.duration,
                              channel=0, text=text, speaker=speaker, language=language)


def make_cuts(pairs: Iterable[tuple[Recording, SupervisionSegment]]) -> CutSet:
    """One cut per recording (the first of a repeated id), sorted by id so that item indices are stable."""
    recordings: dict[str, Recording] = {}
    supervisions = []
    for recording, segment in pairs:
        if recording.id not in recordings:
            recordings[recording.id] = recording
            supervisions.append(segment)
    return cuts_from_manifests(RecordingSet.from_recordings(recordings.values()),
                               SupervisionSet.from_segments(supervisions))


def cuts_from_manifests(recordings: RecordingSet, supervisions: SupervisionSet) -> CutSet:
    """One cut per whole recording, with the recording's id and its supervisions, sorted by id."""
    by_recording: dict[str, list[SupervisionSegment]] = defaultdict(list)
    for segment in supervisions:
        by_recording[segment.recording_id].append(segment)
    cuts: list[Cut] = []
    for rec in recordings:
        cls, channel = (MonoCut, rec.channel_ids[0]) if rec.num_channels == 1 else (MultiCut, rec.channel_ids)
        cuts.append(cls(id=rec.id, start=0.0, duration=rec.duration, channel=channel, recording=rec,
                        supervisions=by_recording.get(rec.id, [])))
    return CutSet.from_cuts(sorted(cuts, key=lambda c: c.id))


def combine(cut_sets: Iterable[CutSet]) -> CutSet:
    """Several cut sets as one, sorted by id (the first occurrence of a duplicated id wins)."""
    seen: dict[str, Cut] = {}
    for cuts in cut_sets:
        for cut in cuts:
            seen.setdefault(cut.id, cut)
    return CutSet.from_cuts(sorted(seen.values(), key=lambda c: c.id))


def libri_parts(corpus: str, root: Path, config: DataConfig, marker: str, audio: str,
                archive_names: tuple[str, ...]) -> tuple[Path, list[str], list[str]]:
    """(corpus root, training parts, [dev part] or []) of a LibriSpeech-like tree.

    A part is any folder holding ``marker`` (transcript) files. Training uses ``config.subsets``,
    or every part that is not dev-*/test-* (none: a CodecError naming the parts found); validation
    uses the first of DEV_PARTS found outside training. Parts without ``audio`` files are left out
    (no parts: an empty corpus).
    """

    def parts_in(d: Path) -> list[str]:
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and next(p.glob(marker), None) is not None)

    found = parts_in(root)
    if not found:
        root = child_if_missing(root, False, archive_names)
        found = parts_in(root)
    if not found:
        raise not_like(corpus, root)
    if config.subsets:
        missing = [s for s in config.subsets if s not in found]
        if missing:
            raise CodecError(f"{LAYOUTS[corpus][0]} part '{missing[0]}' was not found in '{root}' "
                             f"(found: {', '.join(found)}).")
        train = list(config.subsets)
    else:
        train = [p for p in found if not p.startswith(("dev-", "test-"))]
        if not train:
            raise CodecError(f"{LAYOUTS[corpus][0]} in '{root}' has no training part (found: {', '.join(found)}); "
                             f"add one such as train-clean-100, or train on these with "
                             f"data.subsets=[{', '.join(found)}].")
    with_audio = {p for p in found if next((root / p).glob(audio), None) is not None}
    dev = [p for p in DEV_PARTS if p in with_audio and p not in train][:1]
    return root, [p for p in train if p in with_audio], dev
