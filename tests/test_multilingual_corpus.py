"""The multilingual codec-training corpus: catalog phrases, languages kept apart, resumable synthesis."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

import codec.data.multilingual as multilingual
from codec.data.multilingual import (FESTIVAL_VOICES, HELD_OUT_FESTIVAL_VOICES, HELD_OUT_LANGUAGES, LANGUAGES,
                                     MIN_PHRASES, build_multilingual_corpus, catalog_phrases, installed_festival_voices,
                                     plan_corpus)
from codec.data.tts import SynthesisFailed, Voice, available_engines, synthesize
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
    assert {r["split"] for r in rows} == {"train", "heldout"} and not made.skipped
    assert made.minutes["train"] > 0 and made.minutes["heldout"] > 0
    for row in rows:
        info = sf.info(out / row["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.5
        assert (out / row["path"]).with_suffix(".txt").read_text().strip() == row["text"]
    stamps = {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}
    assert build_multilingual_corpus(out, minutes=0.05, seed=1, workers=2, locale_dir=root) == made
    assert stamps == {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in rows}  # kept, not remade


def festival_tree(root: Path, voices: list[str]) -> Path:
    """A /usr/share/festival/voices look-alike holding ``voices`` (and a voice this corpus does not use)."""
    for name in [*voices, "some_other_voice"]:
        (root / "anylanguage" / name).mkdir(parents=True)
    return root


def test_the_festival_plan_reads_each_voice_its_language_in_its_encoding(tmp_path):
    voices = festival_tree(tmp_path / "voices", ["czech_machac", "czech_ph", "msu_ru_nsh_clunits", "ked_diphone"])
    assert installed_festival_voices(voices) == ["czech_machac", "czech_ph", "ked_diphone", "msu_ru_nsh_clunits"]
    root = locale_tree(tmp_path / "locale", {"cs": MIN_PHRASES, "ru": MIN_PHRASES})
    write_mo(root / "en_GB" / "LC_MESSAGES" / "gtk.mo", {f"m{i}": f"Colour number {i:c}" for i in range(65, 95)})
    write_mo(root / "cs" / "LC_MESSAGES" / "more.mo", {"x": "Příliš žluťoučký kůň", "y": "Привет мир"})
    out = tmp_path / "corpus"
    clips = plan_corpus(out, minutes=2.0, seed=3, locale_dir=root, engine="festival", festival_dir=voices)
    assert clips == plan_corpus(out, minutes=2.0, seed=3, locale_dir=root, engine="festival", festival_dir=voices)
    by_voice = {name: [c for c in clips if c.voice.name == name] for name in {c.voice.name for c in clips}}
    assert set(by_voice) == {"czech_machac", "czech_ph", "msu_ru_nsh_clunits", "ked_diphone"}
    assert "czech_ph" in HELD_OUT_FESTIVAL_VOICES and len(by_voice["czech_ph"]) == multilingual.HELDOUT_CLIPS
    assert all(c.path.parent == out / "heldout" / "czech_ph" for c in by_voice["czech_ph"])
    assert len(by_voice["czech_machac"]) == len(by_voice["ked_diphone"]) > multilingual.HELDOUT_CLIPS
    assert all(c.path.parent == out / "train" / "czech_machac" for c in by_voice["czech_machac"])
    for name, voice_clips in by_voice.items():
        locale, encoding, _ = FESTIVAL_VOICES[name]
        assert all(c.voice == Voice("festival", name, encoding=encoding) and c.language == locale for c in voice_clips)
        for clip in voice_clips:
            clip.text.encode(encoding)  # every sentence can be handed to the voice
    czech = " ".join(c.text for c in by_voice["czech_machac"] + by_voice["czech_ph"])
    assert "cs" in czech and "žluťoučký" in czech and "Привет" not in czech  # Cyrillic has no ISO-8859-2 form
    assert all(c.text.startswith("Colour number") for c in by_voice["ked_diphone"])  # the British catalogs


def test_festival_without_voices_or_an_unknown_engine_is_one_clear_error(tmp_path):
    root = locale_tree(tmp_path / "locale", {"cs": MIN_PHRASES})
    with pytest.raises(CodecError, match=r"No festival voice of this corpus is installed under .*festvox-czech-ph"):
        plan_corpus(tmp_path / "out", 1.0, locale_dir=root, engine="festival", festival_dir=festival_tree(
            tmp_path / "none", []))
    with pytest.raises(CodecError, match="No installed festival training voice has 20 or more usable phrases"):
        plan_corpus(tmp_path / "out", 1.0, locale_dir=root, engine="festival",
                    festival_dir=festival_tree(tmp_path / "voices", ["czech_ph", "msu_ru_nsh_clunits"]))
    with pytest.raises(CodecError, match="unknown engine 'flite'; expected espeak-ng or festival"):
        plan_corpus(tmp_path / "out", 1.0, engine="flite")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "multilingual_corpus.py"), "--out",
                             str(tmp_path / "out"), "--engine", "sapi"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'sapi'" in result.stderr and not (tmp_path / "out").exists()


def test_pitch_factors_make_more_voices_of_the_diphone_voices_only(tmp_path):
    voices = festival_tree(tmp_path / "voices", ["czech_machac", "czech_ph", "msu_ru_nsh_clunits", "ked_diphone"])
    root = locale_tree(tmp_path / "locale", {"cs": MIN_PHRASES, "ru": MIN_PHRASES})
    write_mo(root / "en_GB" / "LC_MESSAGES" / "gtk.mo", {f"m{i}": f"Colour number {i:c}" for i in range(65, 95)})
    out = tmp_path / "corpus"
    plan = lambda *factors: plan_corpus(out, minutes=2.0, seed=3, locale_dir=root, engine="festival",
                                        festival_dir=voices, pitch_factors=factors)
    assert plan(1.0) == plan_corpus(out, minutes=2.0, seed=3, locale_dir=root, engine="festival", festival_dir=voices)
    folders = {}
    for clip in plan(0.8, 1.25):
        folders.setdefault(clip.path.parent.relative_to(out).as_posix(), set()).add(clip.voice)
    encodings = {name: FESTIVAL_VOICES[name][1] for name in FESTIVAL_VOICES}
    assert folders == {  # the unit-selection voice has no pitch targets; the held-out voice keeps its own pitch
        f"train/{name}_f0x{f:g}": {Voice("festival", name, encoding=encodings[name], f0_factor=f)}
        for name in ("czech_machac", "ked_diphone") for f in (0.8, 1.25)} | {
        "heldout/czech_ph": {Voice("festival", "czech_ph", encoding="iso-8859-2")}}
    with_own = {clip.path.parent.name for clip in plan(1.0, 0.8)}
    assert with_own == {"czech_machac", "czech_machac_f0x0.8", "ked_diphone", "ked_diphone_f0x0.8", "czech_ph",
                        "msu_ru_nsh_clunits"}
    assert Voice("festival", "ked_diphone", f0_factor=0.8).id == "festival_ked_diphone_f0x0.8"
    with pytest.raises(CodecError, match="None of the installed festival training voices follows pitch factors"):
        plan_corpus(out, 1.0, locale_dir=root, engine="festival", pitch_factors=(0.8,),
                    festival_dir=festival_tree(tmp_path / "ru", ["czech_ph", "msu_ru_nsh_clunits"]))
    with pytest.raises(CodecError, match=r"pitch factors must lie in \[0.5, 2\], got \[3.0\]"):
        plan(3.0)
    with pytest.raises(CodecError, match="pitch factors are for --engine festival"):
        plan_corpus(out, 1.0, locale_dir=root, pitch_factors=(0.8,))
    with pytest.raises(ValueError, match="f0_factor must lie in"):
        Voice("festival", "ked_diphone", f0_factor=0.0)


@pytest.mark.skipif("festival" not in available_engines(), reason="needs festival (apt-get install festival)")
def test_festival_speaks_with_its_pitch_targets_scaled(tmp_path):
    import librosa
    import numpy as np

    text = "The quick brown fox jumps over the lazy dog near the river bank."
    seconds, median_f0 = {}, {}
    for factor in (1.0, 0.7):
        path = tmp_path / f"{factor}.wav"
        seconds[factor] = synthesize(Voice("festival", "kal_diphone", f0_factor=factor), text, path)
        audio, rate = sf.read(path, dtype="float32")
        f0, _, _ = librosa.pyin(audio, fmin=50, fmax=400, sr=rate)
        median_f0[factor] = float(np.nanmedian(f0))
    assert seconds[0.7] == pytest.approx(seconds[1.0], abs=0.01)  # the same timing
    assert 80 < median_f0[1.0] < 130  # kal: about 100 Hz
    assert median_f0[0.7] / median_f0[1.0] == pytest.approx(0.7, abs=0.05)


def test_sentences_a_voice_cannot_speak_are_skipped_and_reported(tmp_path, monkeypatch):
    root = locale_tree(tmp_path / "locale", {"de": MIN_PHRASES, "nl": MIN_PHRASES})
    out = tmp_path / "corpus"
    clips = plan_corpus(out, minutes=0.05, seed=1, locale_dir=root)
    failing = {clips[0].path, clips[-1].path}

    def fake_synthesis(voice: Voice, text: str, path: Path) -> float:
        if path in failing:
            raise SynthesisFailed(f"{voice.engine} wrote no audio for {text!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, [0.1] * 16000, 16000)
        return 1.0

    monkeypatch.setattr(multilingual, "synthesize_once", fake_synthesis)
    made = build_multilingual_corpus(out, minutes=0.05, seed=1, workers=2, locale_dir=root)
    assert made.skipped == tuple(str(p.relative_to(out)) for p in sorted(failing, key=[c.path for c in clips].index))
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(c.path.relative_to(out)) for c in clips if c.path not in failing]
    assert sum(made.minutes.values()) == pytest.approx(len(rows) / 60)
    failing.update(c.path for c in clips)  # nothing can be spoken: an error, and the manifest is not rewritten
    with pytest.raises(CodecError, match="espeak-ng could not speak any sentence of the corpus"):
        build_multilingual_corpus(out, minutes=0.05, seed=1, workers=2, locale_dir=root)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == len(rows)


ITALIAN = Path("/usr/share/festival/voices/italian/lp_diphone")


@pytest.mark.skipif(not ITALIAN.is_dir(), reason="needs festival's Italian voice (apt-get install festvox-italp16k)")
def test_festival_reads_text_in_the_voice_encoding(tmp_path):
    text = "funzionalità della città"
    seconds = synthesize(Voice("festival", "lp_diphone", encoding="latin-1"), text, tmp_path / "it.wav")
    info = sf.info(tmp_path / "it.wav")
    assert info.samplerate == 16000 and info.duration == pytest.approx(seconds) and seconds > 1.0
    audio, _ = sf.read(tmp_path / "it.wav")
    assert abs(audio).max() > 0.05  # speech, not silence
    with pytest.raises(SynthesisFailed, match=r"festival \(lp_diphone\) wrote no audio for 'funzionalit"):
        synthesize(Voice("festival", "lp_diphone"), text, tmp_path / "utf8.wav")  # UTF-8 bytes: no rule matches
    assert not (tmp_path / "utf8.wav").exists()
