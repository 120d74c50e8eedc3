"""Public corpora read by small readers of our own: LibriTTS (and LibriTTS-R), VCTK, Common Voice, MLS.

lhotse 1.33's recipes for these do not fit: LibriTTS and VCTK look every utterance up in a
RecordingSet by id, which is a linear scan (hours on the full corpora), and VCTK stops with
StopIteration when a transcript has no audio file; Common Voice needs the metadata columns of
recent releases (``variant``, ``accents``) and scans clips in spawned processes; MLS cannot pick
one language, needs ``metainfo.txt`` and mixes the FLAC and Opus releases. These readers need
only the files that carry audio, transcript and speaker, and skip clips whose audio is missing.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

from lhotse import Recording, SupervisionSegment

from codec.errors import CodecError

from .clips import (CorpusClips, child_if_missing, language_names, libri_parts, make_cuts, not_like,
                    parts_origin, scan_recordings, supervision)
from .config import DataConfig

log = logging.getLogger(__name__)
Clip = tuple[Recording, SupervisionSegment]


# LibriTTS-R utterance reported as corrupted (noted in lhotse's recipe)
LIBRITTS_BAD = frozenset({"1092_134562_000013_000004"})


def read_libritts(root: Path, config: DataConfig) -> CorpusClips:
    """LibriTTS or LibriTTS-R (same layout): <part>/<speaker>/<chapter>/<spk>_<chap>_<n>_<m>.wav,
    texts from <spk>_<chap>.trans.tsv (id, original, normalised: the normalised text is kept)."""
    root, train, dev = libri_parts("libritts", root, config, "*/*/*.trans.tsv", "*/*/*.wav",
                                   ("LibriTTS_R", "LibriTTS"))
    return CorpusClips(train=make_cuts(clip for part in train for clip in _libritts_part(root / part)),
                       dev=make_cuts(_libritts_part(root / dev[0])) if dev else None,
                       origin=parts_origin(train, dev[0] if dev else None))


def _libritts_part(part: Path) -> list[Clip]:
    texts: dict[str, str] = {}
    files = []
    for table in sorted(part.glob("*/*/*.trans.tsv")):
        if table.name.startswith("._"):  # macOS metadata files shipped in some archives
            continue
        for line in table.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            wav = table.parent / f"{fields[0]}.wav"
            if len(fields) >= 3 and fields[0] not in LIBRITTS_BAD and wav.is_file():
                texts[fields[0]] = fields[2].strip()
                files.append((wav, fields[0]))
    return [(rec, supervision(rec, texts[rec.id], rec.id.split("_")[0], "English"))
            for rec in scan_recordings(files) if rec is not None]


def read_vctk(root: Path, config: DataConfig) -> CorpusClips:
    """VCTK 0.92: txt/<spk>/<spk>_<id>.txt + wav48_silence_trimmed/<spk>/<spk>_<id>_mic1.flac
    (microphone 1, the omni one), or the older VCTK-Corpus: wav48/<spk>/<spk>_<id>.wav.
    Recordings without a transcript (speaker p315) are left out."""

    def looks_right(d: Path) -> bool:
        return ((d / "wav48_silence_trimmed").is_dir() or (d / "wav48").is_dir()) and (d / "txt").is_dir()

    root = child_if_missing(root, looks_right(root), ("VCTK-Corpus-0.92", "VCTK-Corpus"))
    if not looks_right(root):
        raise not_like("vctk", root)
    new_release = (root / "wav48_silence_trimmed").is_dir()
    texts: dict[str, tuple[str, str]] = {}
    files = []
    for txt in sorted((root / "txt").glob("*/*.txt")):
        if txt.name.startswith("."):
            continue
        speaker, utt = txt.parent.name, txt.stem
        audio = (root / "wav48_silence_trimmed" / speaker / f"{utt}_mic1.flac" if new_release
                 else root / "wav48" / speaker / f"{utt}.wav")
        if audio.is_file():
            texts[audio.stem] = (" ".join(txt.read_text(encoding="utf-8", errors="replace").split()), speaker)
            files.append((audio, audio.stem))
    return CorpusClips(train=make_cuts((rec, supervision(rec, *texts[rec.id], "English"))
                                       for rec in scan_recordings(files) if rec is not None))


def read_commonvoice(root: Path, config: DataConfig) -> CorpusClips:
    """Common Voice: cv-corpus-*/<lang>/{train,dev,test,validated}.tsv + clips/*.mp3.

    Trains on ``config.subsets`` (tsv names, default "train") and validates on dev.tsv;
    the newest cv-corpus-* release wins when several hold the language.
    """
    lang_dir = _pick_language(
        "commonvoice", root, config.language,
        candidates=[d for base in (root, *sorted(root.glob("cv-corpus-*"), reverse=True)) if base.is_dir()
                    for d in sorted(base.iterdir()) if (d / "clips").is_dir() and any(d.glob("*.tsv"))],
        is_language=lambda d: (d / "clips").is_dir() and any(d.glob("*.tsv")),
        name_of=lambda d: d.name)
    train_names = config.subsets or ("train",)
    for name in train_names:
        if not (lang_dir / f"{name}.tsv").is_file():
            found = ", ".join(sorted(p.stem for p in lang_dir.glob("*.tsv")))
            raise CodecError(f"Common Voice split '{name}.tsv' was not found in '{lang_dir}' (found: {found}).")
    language = lang_dir.name
    train = make_cuts(pair for n in train_names for pair in _commonvoice_split(lang_dir, n, language))
    dev = None
    if "dev" not in train_names and (lang_dir / "dev.tsv").is_file():
        dev = make_cuts(_commonvoice_split(lang_dir, "dev", language))
    return CorpusClips(train=train, dev=dev, origin=parts_origin(train_names, "dev" if dev is not None else None))


def _commonvoice_split(lang_dir: Path, name: str, language: str) -> list[Clip]:
    with open(lang_dir / f"{name}.tsv", encoding="utf-8", newline="") as f:
        table = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)  # texts may hold unbalanced quotes
        if not {"path", "sentence"} <= set(table.fieldnames or ()):
            raise CodecError(f"'{lang_dir / f'{name}.tsv'}' is not a Common Voice table: "
                             "expected the columns client_id, path and sentence.")
        rows = [r for r in table if r.get("path")]
    files = [(lang_dir / "clips" / r["path"], Path(r["path"]).stem) for r in rows]
    found = scan_recordings([(p, i) for p, i in files if p.is_file()])
    by_id = {rec.id: rec for rec in found if rec is not None}
    if len(by_id) < len(rows):
        log.warning("%s.tsv: %d of %d clips are missing or unreadable", name, len(rows) - len(by_id), len(rows))
    return [(by_id[i], supervision(by_id[i], (r.get("sentence") or "").strip(), r.get("client_id"), language))
            for r, (_, i) in zip(rows, files) if i in by_id]


def read_mls(root: Path, config: DataConfig) -> CorpusClips:
    """Multilingual LibriSpeech: mls_<lang>/<split>/transcripts.txt + audio/<spk>/<book>/<id>.{flac,opus}.

    Trains on ``config.subsets`` (default "train") and validates on dev. The FLAC release
    (mls_<lang>) is preferred over the Opus one (mls_<lang>_opus) when both are present.
    """

    def is_language(d: Path) -> bool:
        return any((d / s / "transcripts.txt").is_file() for s in ("train", "dev", "test"))

    lang_dir = _pick_language(
        "mls", root, config.language,
        candidates=sorted(d for d in root.glob("mls_*") if d.is_dir() and "_lm_" not in d.name and is_language(d)),
        is_language=is_language,
        name_of=lambda d: d.name.removeprefix("mls_").removesuffix("_opus"))
    train_names = config.subsets or ("train",)
    for name in train_names:
        if not (lang_dir / name / "transcripts.txt").is_file():
            raise CodecError(f"MLS split '{name}' was not found in '{lang_dir}' "
                             f"(expected {lang_dir / name / 'transcripts.txt'}).")
    language = lang_dir.name.removeprefix("mls_").removesuffix("_opus")
    train = make_cuts(pair for n in train_names for pair in _mls_split(lang_dir / n, language))
    dev = None
    if "dev" not in train_names and (lang_dir / "dev" / "transcripts.txt").is_file():
        dev = make_cuts(_mls_split(lang_dir / "dev", language))
    return CorpusClips(train=train, dev=dev, origin=parts_origin(train_names, "dev" if dev is not None else None))


def _mls_split(split_dir: Path, language: str) -> list[Clip]:
    texts: dict[str, str] = {}
    for line in (split_dir / "transcripts.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt, _, text = line.partition("\t")
            texts[utt.strip()] = text.strip()
    files = []
    for utt in texts:
        parts = utt.split("_")  # <speaker>_<book>_<segment>
        if len(parts) < 3:
            continue
        folder = split_dir / "audio" / parts[0] / parts[1]
        path = next((p for p in (folder / f"{utt}.flac", folder / f"{utt}.opus") if p.is_file()), None)
        if path is not None:
            files.append((path, utt))
    if len(files) < len(texts):
        log.warning("%s: %d of %d transcribed clips have no audio file", split_dir, len(texts) - len(files), len(texts))
    return [(rec, supervision(rec, texts[rec.id], rec.id.split("_")[0], language))
            for rec in scan_recordings(files) if rec is not None]


def _pick_language(corpus: str, root: Path, language: str, candidates: list[Path],
                   is_language: Callable[[Path], bool], name_of: Callable[[Path], str]) -> Path:
    """The one language folder to use: ``root`` itself if it is one, else the candidate
    matching ``language`` (or the only one found)."""
    if is_language(root):
        if language and name_of(root).lower() not in language_names(language):
            raise CodecError(f"'{root}' holds language '{name_of(root)}', not '{language}'.")
        return root
    if not candidates:
        raise not_like(corpus, root)
    names = sorted({name_of(d) for d in candidates})
    if language:
        matches = [d for d in candidates if name_of(d).lower() in language_names(language)]
        if not matches:
            raise CodecError(f"Language '{language}' was not found in '{root}' (found: {', '.join(names)}).")
        return matches[0]
    if len(names) > 1:
        raise CodecError(f"'{root}' holds several languages ({', '.join(names)}); set data.language to one of them.")
    return candidates[0]
