"""prepare_manifests: a corpus folder -> cached training and validation cut sets.

The cuts are written to ``out_dir/{train,valid}_cuts.jsonl.gz`` together with
``out_dir/cuts_key.json``, a hash of everything that decides which clips are selected
(corpus, resolved data folder, subsets, language, valid_clips, min_seconds, resolved extra
training folders). A later call with the same key loads the files instead of scanning the
corpus again (so files added to the corpus later are only seen after deleting the manifests);
any other key prepares them anew. Files are replaced atomically, so a crash never leaves a
half-written manifest. In distributed training, prepare on one rank first; the result is deterministic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from lhotse import CutSet
from lhotse.cut import Cut

from codec.errors import CodecError

from .clips import LAYOUTS, CorpusClips
from .config import DataConfig
from .corpus_readers import read_commonvoice, read_libritts, read_mls, read_vctk
from .folder_readers import folder_cuts, read_devspeech, read_folder
from .lhotse_corpora import read_librispeech, read_ljspeech

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the cuts prepared from the same inputs change

READERS: dict[str, Callable[[Path, DataConfig], CorpusClips]] = {
    "librispeech": read_librispeech, "libritts": read_libritts, "vctk": read_vctk, "ljspeech": read_ljspeech,
    "commonvoice": read_commonvoice, "mls": read_mls, "folder": read_folder, "devspeech": read_devspeech,
}


def prepare_manifests(config: DataConfig, out_dir: Path) -> tuple[CutSet, CutSet]:
    """(train, valid) cuts of ``config.corpus`` read from ``config.data_dir``, cached in ``out_dir``.

    Validation takes ``valid_clips`` clips from the corpus' own dev split where it has one
    (LibriSpeech/LibriTTS dev-clean, Common Voice dev.tsv, MLS dev), else holds them out of
    the training clips; the choice hashes recording ids, so it is deterministic and stable.
    Train and valid never share a recording. Cuts are sorted by id. The clips of
    ``extra_train_dirs`` join the training cuts (ids prefixed ``extra<n>/``), except files that
    are already among them or among the validation clips.
    """
    root = data_root(config)
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"{name}_cuts.jsonl.gz" for name in ("train", "valid")}
    key_file = out_dir / "cuts_key.json"
    extras = extra_dirs(config)
    key = _cache_key(config, root, extras)
    if key_file.is_file() and all(p.is_file() for p in paths.values()):
        try:
            if json.loads(key_file.read_text())["key"] == key:
                train = _read(paths["train"])
                if len(train):  # (an empty one, cached by an older version, is prepared again: an error says why)
                    return train, _read(paths["valid"])
        except (ValueError, KeyError, TypeError, OSError) as e:
            log.warning("cached manifests in %s are unusable (%s); preparing them again", out_dir, e)
    train, valid = split_clips(READERS[config.corpus](root, config), config, root)
    train = with_extra_clips(train, valid, extras, config.min_seconds)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_file.unlink(missing_ok=True)
    _write_atomic(train, paths["train"])
    _write_atomic(valid, paths["valid"])
    _write_text_atomic(key_file, json.dumps({"key": key, "corpus": config.corpus, "data_dir": str(root)}) + "\n")
    log.info("prepared %d training and %d validation clips from %s", len(train), len(valid), root)
    return train, valid


def data_root(config: DataConfig) -> Path:
    """``config.data_dir`` as an absolute path; a CodecError if it is unset or not a folder."""
    name, layout = LAYOUTS[config.corpus]
    if not config.data_dir:
        raise CodecError(f"No data folder was given for {name}; pass --data-dir (expected {layout}).")
    root = Path(config.data_dir).expanduser().resolve()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CodecError(f"Data folder '{root}' {what} (expected {name}: {layout}).")
    return root


def split_clips(clips: CorpusClips, config: DataConfig, root: Path) -> tuple[CutSet, CutSet]:
    """(train, valid): drop clips under ``min_seconds``, pick ``valid_clips`` for validation.

    When no training clip would be left, a CodecError says why: no clips at all, all of them
    too short, too few to hold validation clips out, or all of them among the validation clips.
    """
    name, layout = LAYOUTS[config.corpus]
    where = f"{name} in '{root}'" + (f" ({clips.origin})" if clips.origin else "")
    every = list(clips.train)
    if not every:
        raise CodecError(f"No audio clips were found for {name} in '{root}' (expected {layout}).")
    train = [c for c in every if c.duration >= config.min_seconds]
    if not train:
        raise CodecError(f"All {_count(len(every), 'training clip')} of {where} are shorter than data.min_seconds "
                         f"({config.min_seconds:g} s; the longest is {max(c.duration for c in every):.2f} s); "
                         "lower data.min_seconds.")
    dev = [c for c in clips.dev or [] if c.duration >= config.min_seconds]
    if clips.dev and not dev:
        log.warning("every dev clip of %s is shorter than data.min_seconds: validation clips are held out of the "
                    "training clips instead", where)
    if not dev and len(train) <= config.valid_clips:
        longer = f" of at least {config.min_seconds:g} s" if config.min_seconds > 0 else ""
        raise CodecError(f"{where} has only {_count(len(train), 'training clip')}{longer}, too few to hold out "
                         f"data.valid_clips ({config.valid_clips}) for validation and train on the rest; "
                         "lower data.valid_clips or add clips.")
    chosen = sorted(dev or train, key=lambda c: hashlib.sha1(c.recording_id.encode()).hexdigest())[:config.valid_clips]
    if dev and len(chosen) < config.valid_clips:
        log.warning("%s has %d dev clips: validating on them instead of data.valid_clips = %d", where, len(chosen),
                    config.valid_clips)
    held_out = {c.recording_id for c in chosen}
    rest = [c for c in train if c.recording_id not in held_out]
    if not rest:
        raise CodecError(f"No training clips are left for {where}: all {len(train)} are among the {len(chosen)} "
                         "validation clips of its dev split; train on other parts (data.subsets).")
    return CutSet.from_cuts(sorted(rest, key=lambda c: c.id)), CutSet.from_cuts(sorted(chosen, key=lambda c: c.id))


def extra_dirs(config: DataConfig) -> list[Path]:
    """``config.extra_train_dirs`` as absolute paths; a CodecError names one that is not a folder."""
    dirs = [Path(d).expanduser().resolve() for d in config.extra_train_dirs]
    for d in dirs:
        if not d.is_dir():
            what = "is not a folder" if d.exists() else "does not exist"
            raise CodecError(f"Extra training folder '{d}' (data.extra_train_dirs) {what}.")
    return dirs


def with_extra_clips(train: CutSet, valid: CutSet, folders: list[Path], min_seconds: float) -> CutSet:
    """``train`` plus the clips of ``folders`` (``extra_dirs``) of at least ``min_seconds``, sorted
    by id; a file (resolved path) already in ``train`` or ``valid`` is not added again."""
    if not folders:
        return train
    seen = {_source(c) for cuts in (train, valid) for c in cuts}
    added: list[Cut] = []
    for n, folder in enumerate(folders):
        cuts = [c for c in folder_cuts(folder, f"extra{n}/") if c.duration >= min_seconds]
        if not cuts:
            raise CodecError(f"Extra training folder '{folder}' has no audio clips"
                             + (f" of at least {min_seconds:g} s" if min_seconds > 0 else "")
                             + " (data.extra_train_dirs).")
        for cut in cuts:
            source = _source(cut)
            if source not in seen:
                seen.add(source)
                added.append(cut)
    return CutSet.from_cuts(sorted([*train, *added], key=lambda c: c.id))


def _source(cut: Cut) -> Path:
    return Path(cut.recording.sources[0].source).resolve()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cache_key(config: DataConfig, root: Path, extras: list[Path]) -> str:
    relevant = {"version": FORMAT_VERSION, "corpus": config.corpus, "data_dir": str(root),
                "subsets": list(config.subsets), "language": config.language,
                "valid_clips": config.valid_clips, "min_seconds": config.min_seconds,
                **({"extra_train_dirs": [str(d) for d in extras]} if extras else {})}  # old keys stay valid
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> CutSet:
    cuts = CutSet.from_file(path)  # lazy for .jsonl.gz; None for an empty file
    return cuts.to_eager() if cuts is not None else CutSet()


def _write_atomic(cuts: CutSet, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.jsonl.gz")  # keeps lhotse's format detection
    try:
        cuts.to_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
