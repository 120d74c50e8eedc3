"""Corpora read through lhotse's own recipes: LibriSpeech and LJSpeech.

Each reader first checks the folder layout (a clear ``CodecError`` if it does not match),
then calls the lhotse recipe without an output folder (the caller caches the final cuts).
LibriSpeech keeps its own dev split apart for validation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lhotse import CutSet, SupervisionSet
from lhotse.recipes import prepare_librispeech, prepare_ljspeech

from codec.errors import CodecError

from .clips import (LAYOUTS, CorpusClips, child_if_missing, combine, cuts_from_manifests, libri_parts, not_like,
                    parts_origin)
from .config import DataConfig


def read_librispeech(root: Path, config: DataConfig) -> CorpusClips:
    """LibriSpeech (or Mini LibriSpeech): <part>/<speaker>/<chapter>/<spk>-<chap>-<utt>.flac."""
    root, train, dev = libri_parts("librispeech", root, config, "*/*/*.trans.txt", "*/*/*.flac", ("LibriSpeech",))
    if not train:
        return CorpusClips(train=CutSet())
    jobs = min(8, os.cpu_count() or 1)
    manifests = _run("librispeech", root, prepare_librispeech, root, dataset_parts=train + dev, num_jobs=jobs)
    return _parts_to_clips(manifests, train, dev)


def read_ljspeech(root: Path, config: DataConfig) -> CorpusClips:
    """LJSpeech-1.1: metadata.csv (id|text|normalized text) and wavs/<id>.wav; one speaker, "LJ"."""

    def looks_right(d: Path) -> bool:
        return (d / "metadata.csv").is_file() and (d / "wavs").is_dir()

    root = child_if_missing(root, looks_right(root), ("LJSpeech-1.1",))
    if not looks_right(root):
        raise not_like("ljspeech", root)
    if next((root / "wavs").glob("*.wav"), None) is None:
        return CorpusClips(train=CutSet())
    manifests = _run("ljspeech", root, prepare_ljspeech, root)
    supervisions = SupervisionSet.from_segments(dataclasses.replace(s, speaker="LJ") for s in manifests["supervisions"])
    return CorpusClips(train=cuts_from_manifests(manifests["recordings"], supervisions))


def _parts_to_clips(manifests: dict[str, dict[str, Any]], train: list[str], dev: list[str]) -> CorpusClips:
    def cuts(part: str) -> CutSet:
        m = manifests[part]
        return cuts_from_manifests(m["recordings"], m["supervisions"])

    return CorpusClips(train=combine(cuts(p) for p in train), dev=cuts(dev[0]) if dev else None,
                       origin=parts_origin(train, dev[0] if dev else None))


def _run(corpus: str, root: Path, recipe: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a lhotse recipe; its assertion and parsing errors become one CodecError sentence."""
    try:
        return recipe(*args, **kwargs)
    except (AssertionError, KeyError, ValueError, IndexError, OSError, UnicodeDecodeError) as e:
        name, layout = LAYOUTS[corpus]
        detail = " ".join(str(e).split()) or type(e).__name__
        raise CodecError(f"Could not read {name} from '{root}' ({type(e).__name__}: {detail}); "
                         f"expected {layout}.") from None
