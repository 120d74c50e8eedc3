"""Tiny look-alike trees of each supported corpus, built from the bundled sample clips."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import json

import numpy as np
import soundfile as sf
import torch

from codec.audio.io import resample, write_audio

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "samples").glob("*.flac"))


def speech_pieces() -> list[np.ndarray]:
    """Nine ~1-1.3 s pieces of real 16 kHz speech (three from each bundled sample clip)."""
    out = []
    for path in SAMPLES:
        data, sr = sf.read(path, dtype="float32")
        assert sr == 16000
        out += np.array_split(data, 3)
    return out


def put(path: Path, piece: np.ndarray, sr: int) -> None:
    """Write a 16 kHz piece as ``path`` (format from the extension) at ``sr``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, resample(torch.from_numpy(piece)[None], 16000, sr), sr)


@dataclass
class Tree:
    root: Path  # what the user passes as --data-dir
    expected: dict[str, tuple[str | None, str | None]]  # recording id -> (text, speaker)
    dev: set[str]  # ids of the corpus' own dev split ({} = none)
    overrides: dict


def librispeech(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root = tmp / "LibriSpeech"
    layout = {("train-clean-100", "19", "198"): 3, ("train-clean-100", "26", "495"): 2, ("dev-clean", "84", "121123"): 2}
    expected, dev, n = {}, set(), 0
    for (part, spk, chap), count in layout.items():
        lines = []
        for u in range(count):
            uid, text = f"{spk}-{chap}-{u:04d}", f"UTTERANCE {n} OF SPEAKER {spk}"
            put(root / part / spk / chap / f"{uid}.flac", pieces[n], 16000)
            lines.append(f"{uid} {text}\n")
            expected[uid] = (text, spk)
            dev |= {uid} if part == "dev-clean" else set()
            n += 1
        (root / part / spk / chap / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return Tree(tmp, expected, dev, {})  # the parent folder: LibriSpeech/ is found inside


def libritts(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root = tmp / "LibriTTS_R"
    layout = {("train-clean-100", "19", "198"): 3, ("train-clean-360", "14", "208"): 2, ("dev-clean", "84", "121123"): 2}
    expected, dev, n = {}, set(), 0
    for (part, spk, chap), count in layout.items():
        folder, trans, book = root / part / spk / chap, [], []
        for u in range(count):
            uid, orig = f"{spk}_{chap}_{u:06d}_000000", f"Sentence {n}, said by {spk}."
            norm = orig.replace(",", "")
            put(folder / f"{uid}.wav", pieces[n], 24000)
            (folder / f"{uid}.original.txt").write_text(orig)
            (folder / f"{uid}.normalized.txt").write_text(norm)
            trans.append(f"{uid}\t{orig}\t{norm}\n")
            book.append(f"{uid}\t{orig}\t{norm}\ttrue\t{u * 2.5:.2f}\t{u * 2.5 + 1.2:.2f}\t{20.5 + u:.2f}\n")
            expected[uid] = (norm, spk)
            dev |= {uid} if part == "dev-clean" else set()
            n += 1
        (folder / f"{spk}_{chap}.trans.tsv").write_text("".join(trans))
        (folder / f"{spk}_{chap}.book.tsv").write_text("".join(book))
    return Tree(root, expected, dev, {})


def vctk(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root = tmp / "VCTK-Corpus-0.92"
    (root / "speaker-info.txt").parent.mkdir(parents=True)
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
                                           "p225  23  F    English    Southern  England\n"
                                           "p226  22  M    English    Surrey\n")
    expected = {}
    for n in range(6):
        spk, utt = ("p225", "p226")[n % 2], f"{n // 2 + 1:03d}"
        text = f"Please call Stella number {n}."
        for mic in ("mic1", "mic2"):
            put(root / "wav48_silence_trimmed" / spk / f"{spk}_{utt}_{mic}.flac", pieces[n], 48000)
        (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
        (root / "txt" / spk / f"{spk}_{utt}.txt").write_text(text + "\n")
        expected[f"{spk}_{utt}_mic1"] = (text, spk)
    put(root / "wav48_silence_trimmed" / "p315" / "p315_001_mic1.flac", pieces[6], 48000)  # no transcript
    (root / "txt" / "p226" / "p226_009.txt").write_text("No audio for this one.\n")  # no audio
    return Tree(root, expected, set(), {})


def ljspeech(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root = tmp / "LJSpeech-1.1"
    lines, expected = [], {}
    for n in range(5):
        uid, text = f"LJ001-{n + 1:04d}", f"Printing, in the only sense {n}."
        put(root / "wavs" / f"{uid}.wav", pieces[n], 22050)
        lines.append(f"{uid}|{text}|{text.lower()}\n")
        expected[uid] = (text, "LJ")
    (root / "metadata.csv").write_text("".join(lines))
    return Tree(tmp, expected, set(), {})


def commonvoice(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    lang = tmp / "cv-corpus-17.0-2024-03-15" / "en"
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    splits = {"train": [0, 1, 2, 3], "dev": [4, 5], "test": [6]}
    expected, dev, rows_all = {}, set(), []
    for split, ns in splits.items():
        rows = []
        for n in ns:
            name, client, text = f"common_voice_en_{1000 + n}.mp3", f"{n % 3:02x}" * 64, f"Sentence number {n}."
            put(lang / "clips" / name, pieces[n], 48000)
            rows.append(f"{client}\t{name}\t{n:064x}\t{text}\t\t2\t0\ttwenties\tmale_masculine\t\t\ten\t\n")
            if split != "test":
                expected[name.removesuffix(".mp3")] = (text, client)
            dev |= {name.removesuffix(".mp3")} if split == "dev" else set()
        (lang / f"{split}.tsv").write_text(header + "".join(rows))
        rows_all += rows
    (lang / "validated.tsv").write_text(header + "".join(rows_all))
    return Tree(tmp, expected, dev, {"language": "en"})


def mls(tmp: Path, pieces: list[np.ndarray], lang: str = "english", ext: str = "flac") -> Tree:
    root = tmp / f"mls_{lang}{'_opus' if ext == 'opus' else ''}"
    expected, dev = {}, set()
    for split, ns in {"train": [0, 1, 2, 3, 4], "dev": [5, 6]}.items():
        lines = []
        for n in ns:
            spk, book = ("10214", "4800")[n % 2], ("10108", "2211")[n % 2]
            uid, text = f"{spk}_{book}_{n:06d}", f"mot numero {n} du livre"
            put(root / split / "audio" / spk / book / f"{uid}.{ext}", pieces[n], 16000)
            lines.append(f"{uid}\t{text}\n")
            expected[uid] = (text, spk)
            dev |= {uid} if split == "dev" else set()
        (root / split / "transcripts.txt").write_text("".join(lines))
    (root / "metainfo.txt").write_text("SPEAKER   |   GENDER   | PARTITION  |  MINUTES   |  BOOK ID   |  TITLE  \n")
    return Tree(tmp, expected, dev, {"language": lang})


def mls_opus(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    return replace(mls(tmp, pieces, "polish", "opus"), overrides={"language": "pl"})


def folder(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root = tmp / "my_audio"
    put(root / "alice" / "a1.wav", pieces[0], 16000)
    (root / "alice" / "a1.txt").write_text("hello  there\n")
    put(root / "alice" / "a2.ogg", pieces[1], 16000)
    put(root / "bob" / "session" / "b1.flac", pieces[2], 44100)
    (root / "bob" / "session" / "b1.lab").write_text("good morning")
    put(root / "bob" / "b2.opus", pieces[3], 48000)
    put(root / "c1.mp3", pieces[4], 16000)
    (root / "notes.md").write_text("not audio")
    put(root / ".trash" / "old.wav", pieces[5], 16000)  # hidden folder: ignored
    expected = {"alice/a1.wav": ("hello there", "alice"), "alice/a2.ogg": (None, "alice"),
                "bob/session/b1.flac": ("good morning", "session"), "bob/b2.opus": (None, "bob"),
                "c1.mp3": (None, "my_audio")}
    return Tree(root, expected, set(), {})


def devspeech(tmp: Path, pieces: list[np.ndarray]) -> Tree:
    root, lines, expected = tmp / "devspeech", [], {}
    for n in range(5):
        rel, sr = f"real/part{n % 2}/clip{n}.flac", (16000, 48000)[n % 2]
        put(root / rel, pieces[n], sr)
        info = sf.info(root / rel)
        lines.append(json.dumps({"path": rel, "text": f"clip {n}", "speaker": f"spk{n % 2}", "sample_rate": sr,
                                 "num_samples": info.frames, "duration_s": round(info.duration, 4)}) + "\n")
        expected[f"real/part{n % 2}/clip{n}"] = (f"clip {n}", f"spk{n % 2}")
    (root / "manifest.jsonl").write_text("".join(lines))
    return Tree(root, expected, set(), {})


CORPORA: dict[str, Callable[[Path, list[np.ndarray]], Tree]] = {
    "librispeech": librispeech, "libritts": libritts, "vctk": vctk, "ljspeech": ljspeech,
    "commonvoice": commonvoice, "mls": mls, "mls_opus": mls_opus, "folder": folder, "devspeech": devspeech,
}


