"""The multilingual codec-training corpus: catalog phrases, languages kept apart, resumable synthesis."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from codec.data.multilingual import (HELD_OUT_LANGUAGES, LANGUAGES, MIN_PHRASES, build_multilingual_corpus,
                                     catalog_phrases, plan_corpus)
from codec.data.tts import available_engines
from codec.errors import CodecError

REPO = Path(__file__).resolve().parents[1]


def write_mo(path: Path, entries: dict[str, str]) -> None:
    """A GNU gettext catalog (.mo) holding ``entries`` (msgid -> msgstr) and the usual empty header."""
    items = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **entries}.items())
    ids, strs = [k.encode() for k, _ in items], [v.encode() for _, v in items]
    start = 7 * 4 + 16 * len(items)
    offsets, blob = [], b""
    for data in ids + strs:
        offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(items), 28, 28 + 8 * len(items), 0, 0)
    tables = b"".join(struct.pack("<2I", *o) for o in offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)


def locale_tree(root: Path, languages: dict[str, int]) -> Path:
    """A /usr/share/locale look-alike: ``count`` usable phrases per locale, plus strings to filter out."""
    for locale, count in languages.items():
        entries = {f"msg {i}": f"Wort{chr(97 + i % 26)} zwei drei {locale}" for i in range(count)}
        entries.update({"fmt": "%s Datei", "path": "Pfad /usr/lib", "digits": "Seite 3", "option": "-y löschen"})
        write_mo(root / locale / "LC_MESSAGES" / "iso_3166.mo", entries)
    return root


def test_catalog_phrases_keep_words_only(tmp_path):
    root = locale_tree(tmp_path, {"de": 3})
    write_mo(root / "de" / "LC_MESSAGES" / "more.mo", {"a": "Grüße aus Köln", "b": "नमस्ते दुनिया", "c": "Grüße aus Köln"})
    (root / "de" / "LC_MESSAGES" / "broken.mo").write_bytes(b"not a catalog")  # skipped, not fatal
    phrases = catalog_phrases("de", root)
    assert phrases == sorted(["Worta zwei drei de", "Wortb zwei drei de", "Wortc zwei drei de", "Grüße aus Köln",
                              "नमस्ते दुनिया"])
    assert catalog_phrases("xx", root) == []


def test_the_plan_is_seeded_and_keeps_held_out_languages_apart(tmp_path):
    root = locale_tree(tmp_path / "locale", {"de": MIN_PHRASES, "fr": MIN_PHRASES, "nl": MIN_PHRASES,
                                             "sv": MIN_PHRASES - 1})  # sv: too few phrases, skipped
    out = tmp_path / "corpus"
    clips = plan_corpus(out, minutes=1.0, seed=3, locale_dir=root)
    assert clips == plan_corpus(out, minutes=1.0, seed=3, locale_dir=root)
    assert [c.text for c in clips] != [c.text for c in plan_corpus(out, minutes=1.0, seed=4, locale_dir=root)]
    by_split = {(c.path.parent.parent.name, c.language) for c in clips}
    assert {lang for split, lang in by_split if split == "train"} == {"de", "fr-fr"}
    assert {lang for split, lang in by_split if split == "heldout"} == {"nl"} and "nl" in HELD_OUT_LANGUAGES
    assert all(c.voice.name.split("+")[0] == c.language and c.text.endswith(".") for c in clips)
    train = [c for c in clips if c.language == "de"]
    assert len(train) == len([c for c in clips if c.language == "fr-fr"]) >= 2
    assert len(plan_corpus(out, minutes=3.0, seed=3, locale_dir=root)) > len(clips)  # minutes size the corpus


def test_no_usable_catalog_is_one_clear_error(tmp_path):
    with pytest.raises(CodecError, match="No language has 20 or more usable phrases"):
        plan_corpus(tmp_path / "out", 1.0, locale_dir=locale_tree(tmp_path / "locale", {"de": 5}))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "multilingual_corpus.py"), "--out",
                             str(tmp_path / "out"), "--minutes", "0"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == "error: --minutes must be > 0, got 0.0."
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(CodecError, match="file exists and is not a folder"):
        plan_corpus(tmp_path / "file", 1.0)


def test_every_language_has_an_espeak_voice_and_a_locale():
    assert HELD_OUT_LANGUAGES <= set(LANGUAGES) and len(set(LANGUAGES) - HELD_OUT_LANGUAGES) >= 40
    assert len(set(LANGUAGES.values())) == len(LANGUAGES)


@pytest.mark.skipif("espeak-ng" not in available_engines(), reason="needs espeak-ng (apt-get install espeak-ng)")
def test_a_small_corpus_resumes(tmp_path):
    root = locale_tree(tmp_path / "locale", {"de": MIN_PHRASES, "nl": MIN_PHRASES})
    out = tmp_path / "corpus"
    made = build_multilingual_corpus(out, minutes=0.05, seed=1, workers=2, locale_dir=root)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "heldout"} and made["train"] > 0 and made["heldout"] > 0
    for row in rows:
        info = sf.info(out / row["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.5
        assert (out / row["path"]).with_suffix(".txt").read_text().strip() == row["text"]
    stamps = {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}
    assert build_multilingual_corpus(out, minutes=0.05, seed=1, workers=2, locale_dir=root) == made
    assert stamps == {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}  # kept, not remade
