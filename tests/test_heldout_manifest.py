"""scripts/heldout_manifest.py: the clips a recipe holds back, as an eval manifest with kinds and transcripts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DEVSPEECH, REPO

SCRIPT = REPO / "scripts" / "heldout_manifest.py"


@pytest.mark.skipif(not (DEVSPEECH / "manifest.jsonl").is_file(), reason="shared devspeech data not present")
def test_held_back_devspeech_clips_carry_their_kind_and_transcript(tmp_path):
    out = tmp_path / "heldout.jsonl"
    command = [sys.executable, str(SCRIPT), str(REPO / "recipes/devspeech/codec16k.yaml"),
               "--data-dir", str(DEVSPEECH), "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    corpus = {str((DEVSPEECH / e["path"]).resolve()): e
              for e in map(json.loads, (DEVSPEECH / "manifest.jsonl").read_text().splitlines())}
    assert len(rows) == 48 and len({r["path"] for r in rows}) == 48  # the recipe's valid_clips
    for row in rows:
        entry = corpus[row["path"]]
        assert row["kind"] == entry["kind"]
        assert row.get("text") == (entry["text"].strip() or None)
    assert {r["kind"] for r in rows} == {"real", "tts"}
    assert sum("text" in r for r in rows) >= 40

    again = subprocess.run(command, capture_output=True, text=True)  # nothing overwritten without --force
    assert again.returncode != 0 and "--force" in again.stderr and out.read_text().count("\n") == 48
