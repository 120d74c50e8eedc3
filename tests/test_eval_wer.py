"""`codec eval` word error rate: corpus aggregation, where the reference comes from, pocketsphinx on the
sample clips (original, silence, noise), and `--metric wer` through the CLI."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio.io import Audio
from codec.errors import CodecError
from codec.eval import runner as R
from codec.eval.baselines import CodedClip
from codec.eval.report import markdown_table, wer_note, write_report

from .conftest import SAMPLES

TEXTS = {"arctic_awb_a0007": "And you always want to see it in the superlative degree.",
         "arctic_slt_a0009": "He turned sharply, and faced Gregson across the table.",
         "librivox_sense_0880": "he was not an ill disposed young man"}


class Replace:
    """A "codec" whose output is ``make(input samples [T])``."""

    def __init__(self, label, make):
        self.name = self.label = label
        self.nominal_kbps = 1.0
        self.make = make

    def code(self, audio: Audio) -> CodedClip:
        x = audio.samples[0].numpy()
        return CodedClip(Audio(torch.from_numpy(self.make(x).astype(np.float32))[None], audio.sample_rate),
                         100, 0.0, 0.0)


SILENCE = Replace("silence", np.zeros_like)
NOISE = Replace("noise", lambda x: np.random.default_rng(0).standard_normal(x.size) * np.sqrt((x**2).mean()))


def row(label, errors, words, group="all"):
    return {"label": label, "system": label, "group": group, "nominal_kbps": 1, "num_bytes": 100, "duration_s": 1.0,
            "clip": f"{label}-{errors}-{words}", **R.wer_fields(" ".join(["w"] * words), "transcript",
                                                                 " ".join(["x"] * errors + ["w"] * (words - errors)))}


def test_clip_errors_sum_to_the_corpus_wer():
    rows = [row("a", 1, 10), row("a", 3, 3), row("a", 0, 7), row("a", 0, 0)]
    assert [r["wer_errors"] for r in rows] == [1, 3, 0, 0] and rows[3]["wer"] is None  # no reference words
    stat = R.aggregate(rows, ["wer"])[0]["wer"]
    assert stat["mean"] == 4 / 20  # all errors over all words, not the mean of 0.1, 1.0, 0.0
    assert (stat["errors"], stat["words"], stat["n"], stat["skipped"]) == (4, 20, 3, 1)
    e, w = np.array([1, 3, 0.0]), np.array([10, 3, 7.0])  # the ratio estimator's linearised variance
    se = np.sqrt(3 / 2 * ((e - 0.2 * w) ** 2).sum()) / w.sum()
    assert stat["ci95"] == pytest.approx(4.302653 * se, rel=1e-6)
    assert R.ratio_interval([2], [8]) == (0.25, 0.0)
    groups = {s["group"]: s["wer"]["mean"] for s in R.aggregate([row("a", 1, 4, "real"), row("a", 3, 4, "tts"),
                                                                 row("a", 0, 2, "tts")], ["wer"])}
    assert groups == {"real": 0.25, "tts": 0.5, "all": 0.4}


def test_reference_is_the_transcript_else_the_asr_of_the_original(tmp_path, monkeypatch):
    speech, sr = sf.read(SAMPLES / "arctic_slt_a0009.flac", dtype="float32")
    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", speech, sr)
    (tmp_path / "a.txt").write_text("Hello there, world!\n")
    (tmp_path / "b.txt").write_text("  \n")  # blank: no transcript
    clips = R.find_clips(tmp_path)
    assert [c.text for c in clips] == ["Hello there, world!", None, None]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.wav"}\n{"path": "b.wav", "text": "from the manifest"}\n')
    assert [c.text for c in R.find_clips(manifest)] == ["Hello there, world!", "from the manifest"]
    manifest.write_text('{"path": "a.wav", "text": 5}\n')
    with pytest.raises(CodecError, match="text"):
        R.find_clips(manifest)

    # a stand-in recogniser: it hears "hello world" in anything that is not silence
    monkeypatch.setattr(R, "transcribe", lambda x, sr: "hello world" if np.abs(x).max() > 0 else "")
    results = R.evaluate([SILENCE, Replace("same", lambda x: x)], clips, metrics=["wer"])
    rows = [(r["label"], r["clip"][-5:], r["wer_reference"], r["wer_errors"], r["wer_words"]) for r in results.rows]
    assert rows == [("original", "a.wav", "transcript", 1, 3), ("silence", "a.wav", "transcript", 3, 3),
                    ("same", "a.wav", "transcript", 1, 3),
                    ("silence", "b.wav", "asr", 2, 2), ("same", "b.wav", "asr", 0, 2),
                    ("silence", "c.wav", "asr", 2, 2), ("same", "c.wav", "asr", 0, 2)]
    assert "pesq_wb" not in results.rows[1] and results.rows[1]["recognized_text"] == ""
    summaries = {s["label"]: s for s in R.aggregate(results.rows, ["wer"])}
    assert list(summaries) == ["original", "silence", "same"]
    assert summaries["original"]["wer"]["mean"] == pytest.approx(1 / 3) and summaries["original"]["clips"] == 1
    assert summaries["silence"]["wer"]["mean"] == 1.0 and summaries["same"]["wer"]["mean"] == pytest.approx(1 / 7)
    assert summaries["original"]["actual_kbps"] is None
    note = wer_note(results.rows)
    assert "reference: transcripts (1 clip) / ASR of the original (2 clips)" in note and "floor" in note
    assert "| original | 1 | all | - | - | - | 33.3 ± 0.0 |" in markdown_table(list(summaries.values()), ["wer"])

    write_report(tmp_path / "report", results, list(summaries.values()), ["wer"], [])
    document = json.loads((tmp_path / "report" / "results.json").read_text())
    assert note in document["notes"] and not any("skipped" in n for n in document["notes"])
    with open(tmp_path / "report" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["label"] == "original" and table[0]["wer_errors"] == "1" and table[0]["num_bytes"] == ""

    monkeypatch.setattr(R, "transcribe", lambda x, sr: "")  # nothing heard: no reference words where no transcript
    results = R.evaluate([SILENCE], clips[1:], metrics=["wer"])
    assert [r["wer"] for r in results.rows] == [None, None]
    with pytest.raises(CodecError, match="Unknown metric"):
        R.evaluate([SILENCE], clips, metrics=["bleu"])


def test_pocketsphinx_wer_of_the_sample_clips():
    clips = R.find_clips(SAMPLES)
    assert {c.path.stem: c.text for c in clips} == TEXTS  # samples/*.txt hold the texts of samples/CREDITS.md
    summary = {s["label"]: s["wer"] for s in R.aggregate(R.evaluate([SILENCE, NOISE], clips, metrics=["wer"]).rows,
                                                         ["wer"])}
    assert summary["original"]["mean"] < 0.25 and summary["original"]["words"] == 28  # measured 3 / 28
    assert summary["silence"]["mean"] >= 0.95 and summary["noise"]["mean"] >= 0.9  # measured 1.0 and 1.0


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg is needed for the Opus baseline")
def test_cli_metric_wer(tmp_path, monkeypatch):
    import codec.audio.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)  # only the baseline
    out = tmp_path / "report"
    result = CliRunner().invoke(cli.app, ["eval", "--data", str(SAMPLES), "--baseline", "opus:12", "--out", str(out),
                                          "--metric", "wer", "--workers", "1", "--examples", "0"])
    assert result.exit_code == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    summary = {s["label"]: s for s in document["summary"]}
    assert list(summary) == ["original", "Opus 12 kbps"] and "stoi" not in summary["Opus 12 kbps"]
    assert summary["original"]["wer"]["mean"] < 0.25 and summary["Opus 12 kbps"]["wer"]["mean"] < 0.5  # 11%, 18%
    assert any("reference: transcripts (3 clips)." in n for n in document["notes"])
    table = (out / "results.md").read_text()
    assert "WER (%) |" in table and "| original | 3 | all | - | - | - | " in table
    assert "wer_errors" in (out / "results.csv").read_text().splitlines()[0]
    assert "WER (%)" in result.stdout and "transcripts (3 clips)" in result.stdout
