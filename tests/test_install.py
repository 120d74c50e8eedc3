"""A non-editable install works on its own: recipes and the bundled model travel inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_built_wheel_finds_its_recipes_and_bundled_model(tmp_path):
    """Build the wheel, install it (without dependencies: those of this environment serve) into a
    folder of its own, and run `codec` from elsewhere: nothing may come from the source checkout."""
    run = lambda *args, **kw: subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", str(tmp_path / "dist"), str(ROOT))
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("codec_toolkit-*.whl"))
    site = tmp_path / "site"
    installed = run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site), "CODEC_MODELS_DIR": str(tmp_path / "models"), "COLUMNS": "200"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    codec = [sys.executable, "-c", "import sys, cli; sys.argv[0] = 'codec'; cli.main()"]
    where = run(sys.executable, "-c", "import codec, cli; print(codec.__file__); print(cli.__file__)", env=env, cwd=work)
    assert where.stdout.split() == [str(site / "codec" / "__init__.py"), str(site / "cli.py")]
    help_text = run(*codec, "train", "--help", env=env, cwd=work)
    assert help_text.returncode == 0 and "devspeech/codec16k" in help_text.stdout and "librispeech/codec16k" in help_text.stdout
    assert (site / "codec" / "recipes" / "devspeech" / "README.md").is_file()
    encoded = run(*codec, "encode", str(SAMPLES / "arctic_slt_a0009.flac"), "-o", "a.cdc", env=env, cwd=work)
    assert encoded.returncode == 0, encoded.stderr
    info = run(*codec, "info", "a.cdc", env=env, cwd=work)
    assert "devspeech_16khz" in info.stdout
