"""Local corpora: any folder of audio files, and the bundled devspeech set (manifest.jsonl)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lhotse import CutSet, Recording
from lhotse.audio import AudioSource

from codec.errors import CodecError

from .clips import AUDIO_SUFFIXES, CorpusClips, make_cuts, not_like, scan_recordings, supervision
from .config import DataConfig

log = logging.getLogger(__name__)


def read_folder(root: Path, config: DataConfig) -> CorpusClips:
    """Every audio file under ``root`` (hidden files and folders excepted); transcript from a
    sibling <stem>.txt or <stem>.lab, speaker = the name of the file's folder."""
    if not root.is_dir():
        raise not_like("folder", root)
    return CorpusClips(train=folder_cuts(root))


def folder_cuts(root: Path, id_prefix: str = "") -> CutSet:
    """``read_folder``'s clips of ``root``; recording id = ``id_prefix`` + the file's path from ``root``."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    files = [(p, id_prefix + p.relative_to(root).as_posix()) for p in paths]
    pairs = []
    for (path, _), rec in zip(files, scan_recordings(files)):
        if rec is not None:
            pairs.append((rec, supervision(rec, _transcript(path), path.parent.name)))
    return make_cuts(pairs)


def _transcript(audio: Path) -> str | None:
    for suffix in (".txt", ".lab"):
        text_file = audio.with_suffix(suffix)
        if text_file.is_file():
            return " ".join(text_file.read_text(encoding="utf-8", errors="replace").split())
    return None


def read_devspeech(root: Path, config: DataConfig) -> CorpusClips:
    """The bundled dev set: manifest.jsonl lines with path (relative), text, speaker,
    sample_rate and num_samples. Headers are not read: the manifest's numbers are used."""
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise not_like("devspeech", root)
    pairs = []
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            rel, sample_rate, num_samples = str(entry["path"]), int(entry["sample_rate"]), int(entry["num_samples"])
            if sample_rate <= 0 or num_samples <= 0:
                raise ValueError("sample_rate and num_samples must be positive")
        except (ValueError, KeyError, TypeError) as e:
            raise CodecError(f"Line {n} of '{manifest}' is not a devspeech clip entry "
                             f"({type(e).__name__}: {e}).") from None
        path = root / rel
        if not path.is_file():
            log.warning("devspeech manifest line %d: missing file %s", n, path)
            continue
        rec = Recording(id=str(Path(rel).with_suffix("").as_posix()),
                        sources=[AudioSource(type="file", channels=[0], source=str(path))],
                        sampling_rate=sample_rate, num_samples=num_samples, duration=num_samples / sample_rate)
        pairs.append((rec, supervision(rec, entry.get("text"), entry.get("speaker"), entry.get("lang"))))
    return CorpusClips(train=make_cuts(pairs))
