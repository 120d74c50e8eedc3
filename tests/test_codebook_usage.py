"""scripts/codebook_usage.py: the codes an audio codec uses per level, and clear errors."""

from __future__ import annotations

import subprocess
import sys
import torch

from codec.audio import from_pretrained
from codec.audio.compress import encode_audio
from codec.audio.io import read_audio
from scripts.codebook_usage import level_codes

from .conftest import REPO, SAMPLES

SCRIPT = REPO / "scripts" / "codebook_usage.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_level_codes_are_the_files_codes_end_to_end():
    model = from_pretrained("devspeech_16khz")
    paths = [SAMPLES / "arctic_awb_a0007.flac", SAMPLES / "arctic_slt_a0009.flac"]
    codes = level_codes(model, paths)
    expected = torch.cat([encode_audio(model, read_audio(p)).codes for p in paths], dim=-1)
    assert codes.shape == (1, 12, 355) and torch.equal(codes, expected)


def test_the_table_counts_codes_and_bounds_the_information(tmp_path):
    result = run("devspeech_16khz", "--data", str(SAMPLES))
    assert result.returncode == 0, result.stderr
    codes = level_codes(from_pretrained("devspeech_16khz"), sorted(SAMPLES.glob("*.flac")))
    used = [len(torch.unique(codes[0, q])) for q in range(12)]
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[3]) for r in rows] == used  # codes used per level, as counted here
    assert used[4] < 10  # the collapse the model card describes: a level using a handful of its 1024 codes
    bits = sum(float(r[5]) for r in rows)
    assert f"at most {bits * 50 / 1000:.2f} kbps of information in the 6 kbps stream" in result.stdout


def test_errors_are_one_sentence(tmp_path):
    for args, message in [(("devspeech_16khz", "--data", str(tmp_path / "none")), "does not exist"),
                          (("no_such_model", "--data", str(SAMPLES)), "No model folder or registered model"),
                          (("digits_conv", "--data", str(SAMPLES)), "digits_conv is not an audio codec.")]:
        result = run(*args)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr
