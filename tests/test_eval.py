"""`codec eval`: systems x clips, delay removal, aggregation with CIs, and the written report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import cli
from codec.eval.runner import aggregate, confidence_interval, paired_differences, ratio_interval

from .conftest import SAMPLES

runner = CliRunner()
HAVE_TOOLS = bool(shutil.which("ffmpeg") and shutil.which("c2enc"))


@pytest.fixture()
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for path in sorted(SAMPLES.glob("*.flac")):
        shutil.copy(path, folder / path.name)
    data, sr = sf.read(SAMPLES / "arctic_slt_a0009.flac", dtype="float32")
    sf.write(folder / "short.wav", data[:1600], sr)  # 0.1 s: too short for PESQ and STOI
    (folder / "broken.wav").write_bytes(b"RIFF....not audio")
    return folder


def test_confidence_interval_is_the_t_interval():
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)
    assert confidence_interval([5.0]) == (5.0, 0.0)


def test_aggregate_per_group_and_overall():
    rows = [{"label": "a", "system": "a", "group": g, "nominal_kbps": 6, "num_bytes": 800, "duration_s": 1.0,
             "delay_ms": 0.0,
             "encode_rtf": 0.1, "decode_rtf": 0.1, "pesq_wb": v} for g, v in [("real", 2.0), ("real", 4.0), ("tts", 3.0)]]
    rows.append({**rows[0], "group": "tts", "pesq_wb": None})
    summaries = {s["group"]: s for s in aggregate(rows, ["pesq_wb"])}
    assert summaries["real"]["pesq_wb"]["mean"] == 3.0 and summaries["real"]["clips"] == 2
    assert summaries["tts"]["pesq_wb"] == {"mean": 3.0, "ci95": 0.0, "n": 1, "skipped": 1}
    assert summaries["all"]["pesq_wb"]["mean"] == 3.0 and summaries["all"]["clips"] == 4
    assert summaries["all"]["actual_kbps"] == pytest.approx(6.4)


def test_paired_differences_clip_by_clip():
    def row(label, clip, group, pesq, mel, errors, words=4):
        return {"label": label, "system": label, "clip": clip, "group": group, "pesq_wb": pesq,
                "mel_distance": mel, "wer": None if words == 0 else errors / words, "wer_errors": errors,
                "wer_words": words}

    rows = [row("original", "c1", "real", None, None, 0),
            row("a", "c1", "real", 2.5, 1.0, 1), row("b", "c1", "real", 2.0, 1.5, 2),
            row("a", "c2", "real", 1.8, 1.2, 0, 2), row("b", "c2", "real", 2.0, 1.0, 0, 2),
            row("a", "c3", "tts", 3.3, None, 2), row("b", "c3", "tts", 3.0, 1.1, 0),
            row("a", "c4", "tts", 9.9, 0.1, 0)]  # c4: not coded by b, so not compared
    entries = {e["group"]: e for e in paired_differences(rows, "b", ["pesq_wb", "mel_distance", "wer"])}
    assert set(entries) == {"real", "tts", "all"}  # no entry for "original" or for b itself
    every = entries["all"]
    assert every["label"] == "a" and every["against"] == "b" and every["clips"] == 3
    mean, half = confidence_interval([0.5, -0.2, 0.3])
    assert every["pesq_wb"] == {"mean": pytest.approx(mean), "ci95": pytest.approx(half), "n": 3, "better": 2, "worse": 1}
    # lower is better for the mel distance; c3 has no score for a, so only two pairs count
    assert every["mel_distance"]["mean"] == pytest.approx(-0.15) and every["mel_distance"]["n"] == 2
    assert (every["mel_distance"]["better"], every["mel_distance"]["worse"]) == (1, 1)
    # WER: the difference of the corpus rates, (1 - 2 + 0 - 0 + 2 - 0) / (4 + 2 + 4)
    rate, half = ratio_interval([-1, 0, 2], [4, 2, 4])
    assert every["wer"] == {"mean": pytest.approx(0.1), "ci95": pytest.approx(half), "n": 3, "better": 1, "worse": 1}
    assert rate == pytest.approx(0.1)
    assert entries["tts"]["clips"] == 1 and "mel_distance" not in entries["tts"]  # no clip scored by both


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TOOLS, reason="ffmpeg and codec2 are needed for the baselines")
def test_eval_writes_every_output(tmp_path, clips, tiny_model_dir):
    out = tmp_path / "report"
    result = runner.invoke(cli.app, ["eval", "--model", str(tiny_model_dir), "--bandwidth", "6", "--bandwidth", "24",
                                     "--data", str(clips), "--baseline", "opus:6,12", "--baseline", "codec2:3200,1300",
                                     "--out", str(out), "--workers", "2", "--examples", "1"])
    assert result.exit_code == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    labels = [s["label"] for s in document["summary"]]
    tiny = f"{tiny_model_dir.parent.name}/tiny-test"
    assert labels == [f"{tiny} 6 kbps", f"{tiny} 24 kbps", "Opus 6 kbps", "Opus 12 kbps", "Codec2 3200", "Codec2 1300"]
    assert len(document["clips"]) == 6 * 4 and len(document["unreadable"]) == 1
    assert any("delay was estimated by cross-correlation" in n for n in document["notes"])
    assert any("PESQ" in n and "skipped" in n for n in document["notes"])
    summary = {s["label"]: s for s in document["summary"]}
    # plausible classic codecs: quality rises with bitrate
    assert summary["Opus 12 kbps"]["pesq_wb"]["mean"] > summary["Opus 6 kbps"]["pesq_wb"]["mean"]
    assert summary["Codec2 3200"]["stoi"]["mean"] > summary["Codec2 1300"]["stoi"]["mean"]
    assert summary["Opus 12 kbps"]["pesq_wb"]["mean"] > summary[f"{tiny} 24 kbps"]["pesq_wb"]["mean"]  # untrained
    assert 6.0 < summary["Opus 6 kbps"]["actual_kbps"] < 8.0  # CBR + Ogg pages
    assert summary["Codec2 3200"]["actual_kbps"] == pytest.approx(3.2, rel=0.05)
    table = (out / "results.md").read_text()
    assert "| Opus 12 kbps | 4 | all | 12 |" in table and "unreadable:" in table
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 24
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "spectrograms").glob("*.png"))) == 1
    assert "Opus 12 kbps" in result.stdout
    again = runner.invoke(cli.app, ["eval", "--baseline", "opus:12", "--data", str(clips), "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.stderr


@pytest.mark.skipif(not HAVE_TOOLS, reason="ffmpeg is needed for the Opus baseline")
def test_manifest_groups_real_and_synthetic(tmp_path, monkeypatch):
    import codec.audio.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)  # only the baseline
    names = sorted(p.name for p in SAMPLES.glob("*.flac"))
    for name in names:
        shutil.copy(SAMPLES / name, tmp_path / name)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"path": n, "kind": "tts" if i == 0 else "real"}) + "\n"
                                for i, n in enumerate(names)))
    out = tmp_path / "report"
    result = runner.invoke(cli.app, ["eval", "--baseline", "opus:6,12", "--data", str(manifest), "--out", str(out),
                                     "--workers", "1", "--examples", "0", "--metric", "stoi", "--metric", "pesq_wb",
                                     "--against", "Opus 6 kbps"])
    assert result.exit_code == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    summary = document["summary"]
    assert {s["group"]: s["clips"] for s in summary} == {"real": 2, "tts": 1, "all": 3}
    assert "stoi" in summary[0] and "pesq_wb" in summary[0] and "mel_distance" not in summary[0]
    # --against: Opus 12 kbps minus Opus 6 kbps, clip by clip, agrees with the per-clip rows
    paired = {e["group"]: e for e in document["paired"]}
    assert set(paired) == {"real", "tts", "all"} and paired["all"]["label"] == "Opus 12 kbps"
    scores = {(r["label"], r["clip"]): r["pesq_wb"] for r in document["clips"]}
    gains = [scores["Opus 12 kbps", c] - scores["Opus 6 kbps", c] for (label, c) in scores if label == "Opus 12 kbps"]
    assert paired["all"]["pesq_wb"]["mean"] == pytest.approx(np.mean(gains))
    assert paired["all"]["pesq_wb"]["better"] == 3  # twice the bits win on every clip
    assert "## Clip by clip" in (out / "results.md").read_text() and "(3/3 better)" in result.stdout


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: p.mkdir(), ["--baseline", "opus"], "No audio clips found"),
    (lambda p: None, ["--baseline", "opus"], "does not exist"),
    (lambda p: (p.mkdir(), sf.write(p / "a.wav", np.zeros(1600, np.float32), 16000)), [], "Nothing to evaluate"),
    (lambda p: (p.mkdir(), sf.write(p / "a.wav", np.zeros(1600, np.float32), 16000)), ["--baseline", "aac"],
     "aac"),
    (lambda p: (p.mkdir(), sf.write(p / "a.wav", np.zeros(1600, np.float32), 16000)),
     ["--baseline", "opus", "--metric", "mos"], "Unknown metric(s) mos"),
    (lambda p: (p.mkdir(), sf.write(p / "a.wav", np.zeros(1600, np.float32), 16000)),
     ["--baseline", "opus:6", "--against", "opus 6 kbps"], "'opus 6 kbps' is none of the systems evaluated: 'Opus 6 kbps'"),
])
def test_bad_eval_requests_fail_cleanly(tmp_path, monkeypatch, setup, args, message):
    import codec.audio.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)
    data = tmp_path / "data"
    setup(data)
    result = runner.invoke(cli.app, ["eval", "--data", str(data), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "results.json").exists()


def test_against_a_baseline_that_is_not_installed_is_a_warning(tmp_path, monkeypatch, tiny_model_dir):
    import codec.eval.baselines as baselines

    monkeypatch.setattr(baselines, "available_baselines", lambda: {"opus": False, "codec2": False, "mp3": False})
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLES / "arctic_slt_a0009.flac", data)
    out = tmp_path / "out"
    result = runner.invoke(cli.app, ["eval", "--model", str(tiny_model_dir), "--bandwidth", "6", "--data", str(data),
                                     "--out", str(out), "--baseline", "opus:6", "--against", "Opus 6 kbps",
                                     "--metric", "stoi", "--workers", "1", "--examples", "0"])
    assert result.exit_code == 0, result.stderr
    assert "no clip-by-clip comparison with Opus 6 kbps: its program is not installed" in result.stderr
    document = json.loads((out / "results.json").read_text())
    assert document["paired"] == []
    assert [s["label"] for s in document["summary"]] == [f"{tiny_model_dir.parent.name}/tiny-test 6 kbps"]
