"""Bad input to every reader, through the command line as a user meets it.

Each case names a file the user might have (broken, forged, foreign, odd but valid) and what
must happen: one `error:` sentence naming the problem, exit code 1, no output file and no
traceback; or, for odd but valid files, correct acceptance.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio.bitstream import decode_cdc, encode_cdc

from .cdc_forgery import join, split, with_crc
from .test_cli import assert_clean_failure, speech_like

runner = CliRunner()


def run(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def _wav(path: Path, seconds: float = 0.3, sr: int = 16000, **kw) -> Path:
    sf.write(path, speech_like(sr, seconds, 1)[:, 0], sr, **kw)
    return path


def _streamed_wav(path: Path) -> Path:
    """A WAV written by a recorder that never went back to fill in the data size (0)."""
    data = bytearray(_wav(path).read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0)
    path.write_bytes(bytes(data))
    return path


def _header_claims_more(path: Path) -> Path:
    data = _wav(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _nan_wav(path: Path) -> Path:
    x = speech_like(16000, 0.2, 1)[:, 0]
    x[100] = np.nan
    sf.write(path, x, 16000, subtype="FLOAT")
    return path


# --- audio files: `codec encode` ---------------------------------------------------------------
AUDIO_REJECTED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (lambda p: p.write_bytes(b"") or p, "is empty"),
    "header only, no samples": (lambda p: sf.write(p, np.zeros(0, np.float32), 16000) or p, "no audio"),
    "data chunk cut short": (_header_claims_more, "truncated"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)) or p, "not"),
    "text named .wav": (lambda p: p.write_text("not audio\n" * 50) or p, "not"),
    "NaN sample": (_nan_wav, "NaN"),
    "a folder": (lambda p: p.mkdir() or p, "directory"),
    "missing": (lambda p: p, "does not exist"),
}
AUDIO_ACCEPTED: dict[str, tuple[Callable[[Path], Path], int, int]] = {  # builder, frames, sample rate
    "data size 0 (streamed recording)": (_streamed_wav, 4800, 16000),
    "44,101 Hz (coprime with 16 kHz)": (lambda p: _wav(p, 1.0, 44101), 44101, 44101),
    "one sample": (lambda p: sf.write(p, np.full(1, 0.1, np.float32), 16000) or p, 1, 16000),
}


@pytest.mark.parametrize("case", AUDIO_REJECTED)
def test_bad_audio_is_refused(tmp_path, tiny_model_dir, case):
    build, message = AUDIO_REJECTED[case]
    out = tmp_path / "out.cdc"
    result = run("encode", build(tmp_path / "in.wav"), "-o", out, "--model", tiny_model_dir)
    assert_clean_failure(result, out)
    assert result.exit_code == 1 and message.lower() in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("case", AUDIO_ACCEPTED)
def test_odd_but_valid_audio_is_accepted(tmp_path, tiny_model_dir, case):
    build, frames, sr = AUDIO_ACCEPTED[case]
    src, cdc, back = build(tmp_path / "in.wav"), tmp_path / "in.cdc", tmp_path / "back.wav"
    result = run("encode", src, "-o", cdc, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.stderr
    assert run("decode", cdc, "-o", back).exit_code == 0
    info = sf.info(back)
    assert (info.frames, info.samplerate) == (frames, sr)


# --- .cdc files: `codec decode` and `codec info` -------------------------------------------------
def _forge(valid: bytes, **fields) -> bytes:
    """``valid`` with header fields replaced and a correct checksum: only validation can catch it."""
    meta, rest = split(valid)
    return join(json.dumps({**meta, **fields}).replace('"__BIG__"', "1" + "0" * 400), rest)


CDC_REJECTED: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda v: b"", "is empty"),
    "foreign bytes": (lambda v: b"RIFF" + v[4:], "not a .cdc file"),
    "truncated": (lambda v: v[:-7], "truncated"),
    "one flipped bit": (lambda v: v[:40] + bytes([v[40] ^ 4]) + v[41:], "corrupted"),
    "future version": (lambda v: with_crc(v[:4] + bytes([9]) + v[5:-4]), "version 9"),
    "huge JSON integer": (lambda v: _forge(v, num_frames="__BIG__"), "invalid header"),
    "forged segment grid": (lambda v: _forge(v, segment_samples=2, segment_stride=1, model_num_samples=10**12),
                            "invalid header"),
    "too many frames for the samples": (lambda v: _forge(v, num_samples=1), "invalid header"),
    "codebooks without their payload": (lambda v: _forge(v, codebook_sizes=[64] * 9), "truncated"),
}


@pytest.fixture(scope="module")
def valid_cdc(tmp_path_factory, tiny_model_dir) -> bytes:
    folder = tmp_path_factory.mktemp("valid")
    cdc = folder / "a.cdc"
    assert run("encode", _wav(folder / "a.wav"), "-o", cdc, "--model", tiny_model_dir).exit_code == 0
    return cdc.read_bytes()


@pytest.mark.parametrize("case", CDC_REJECTED)
def test_bad_cdc_files_are_refused(tmp_path, valid_cdc, case):
    forge, message = CDC_REJECTED[case]
    src, out = tmp_path / "in.cdc", tmp_path / "out.wav"
    src.write_bytes(forge(valid_cdc))
    for result in (run("decode", src, "-o", out), run("info", src)):
        assert_clean_failure(result, out)
        assert result.exit_code == 1 and message in result.stderr, result.stderr


@pytest.mark.parametrize("sizes, codes", [((64,) * 5, None), ((128,) * 4, None), ((64,) * 4, "rate")])
def test_a_file_that_does_not_fit_its_model_is_refused(tmp_path, valid_cdc, sizes, codes):
    """Self-consistent files (payload, checksum) whose codebooks or rates are not the model's: they
    used to pass `info` and crash inside the model (IndexError / ValueError)."""
    header, valid_codes = decode_cdc(valid_cdc)
    if codes == "rate":
        header = dataclasses.replace(header, sample_rate=8000, original_sample_rate=8000, num_samples=4800,
                                     frame_rate=500.0)
    header = dataclasses.replace(header, codebook_sizes=sizes)
    forged = torch.zeros(header.channels, len(sizes), header.num_frames, dtype=torch.long)
    src, out = tmp_path / "in.cdc", tmp_path / "out.wav"
    src.write_bytes(encode_cdc(header, forged))
    assert run("info", src).exit_code == 0  # a valid file, for some model
    result = run("decode", src, "-o", out)
    assert_clean_failure(result, out)
    assert result.exit_code == 1 and "does not fit" in result.stderr, result.stderr


# --- model folders: `--model FOLDER` ------------------------------------------------------------
def _model_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _edit_config(folder: Path, edit: Callable[[dict], object]) -> None:
    document = json.loads((folder / "config.json").read_text())
    edited = edit(document)
    (folder / "config.json").write_text(json.dumps(document if edited is None else edited))


MODEL_REJECTED: dict[str, tuple[Callable[[Path], None], str]] = {
    "no config.json": (lambda f: (f / "config.json").unlink(), "needs config.json"),
    "config.json not JSON": (lambda f: (f / "config.json").write_bytes(b"\xff\x00{"), "not valid JSON"),
    "config.json a list": (lambda f: _edit_config(f, lambda d: [d]), "does not describe a model"),
    "unknown model type": (lambda f: _edit_config(f, lambda d: d.update(model_type="vocoder")), "model_type"),
    "future format": (lambda f: _edit_config(f, lambda d: d.update(format_version=7)), "format version 7"),
    "unknown config key": (lambda f: _edit_config(f, lambda d: d["config"].update(colour="red")), "colour"),
    "wrong config type": (lambda f: _edit_config(f, lambda d: d["config"].update(sample_rate="fast")),
                          "sample_rate"),
    "weights not safetensors": (lambda f: (f / "model.safetensors").write_bytes(b"PK\x03\x04 zip"), "safetensors"),
    "weights of another shape": (lambda f: _edit_config(f, lambda d: d["config"]["seanet"].update(dimension=8)),
                                 "do not match"),
}


@pytest.mark.parametrize("case", MODEL_REJECTED)
def test_broken_model_folders_are_refused(tmp_path, tiny_model_dir, case):
    corrupt, message = MODEL_REJECTED[case]
    folder = _model_copy(tiny_model_dir, tmp_path / "model")
    corrupt(folder)
    out = tmp_path / "out.cdc"
    result = run("encode", _wav(tmp_path / "a.wav"), "-o", out, "--model", folder)
    assert_clean_failure(result, out)
    assert result.exit_code == 1 and message in result.stderr, result.stderr


# --- evaluation manifests: `codec eval --data` ----------------------------------------------------
MANIFEST_REJECTED: dict[str, tuple[bytes, str]] = {
    "binary": (b"\xff\xfe\x00garbage", "manifest"),
    "not JSON": (b'{"path": "a.wav"}\nnot json\n', "Line 2"),
    "no path": (b'{"file": "a.wav"}\n', "Line 1"),
    "path not a string": (b'{"path": 5}\n', "Line 1"),
    "only blank lines": (b"\n\n", "No audio clips"),
}


@pytest.mark.parametrize("case", MANIFEST_REJECTED)
def test_bad_manifests_are_refused(tmp_path, tiny_model_dir, case):
    content, message = MANIFEST_REJECTED[case]
    _wav(tmp_path / "a.wav")
    (tmp_path / "m.jsonl").write_bytes(content)
    result = run("eval", "--model", tiny_model_dir, "--data", tmp_path / "m.jsonl", "--out", tmp_path / "r")
    assert_clean_failure(result, tmp_path / "r" / "results.json")
    assert result.exit_code == 1 and message in result.stderr, result.stderr


# --- recipes and configs: `codec train` -----------------------------------------------------------
RECIPE_REJECTED: dict[str, tuple[str | bytes, str]] = {
    "not YAML": ("model: [unclosed", "not valid YAML"),
    "binary": (b"\xff\xfe\x00\x01", "not valid YAML"),
    "a list": ("- a\n- b\n", "mapping"),
    "unknown key": ("stepz: 10\n", "stepz"),
    "wrong type": ("steps: many\n", "steps"),
    "negative steps": ("steps: -5\n", "steps must be positive"),
    "unknown corpus": ("data: {corpus: nonsense}\n", "corpus must be one of"),
}


@pytest.mark.parametrize("case", RECIPE_REJECTED)
def test_bad_recipes_are_refused(tmp_path, case):
    content, message = RECIPE_REJECTED[case]
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run("train", recipe, "--run-dir", tmp_path / "run")
    assert_clean_failure(result, tmp_path / "run" / "checkpoints")
    assert result.exit_code == 1 and message in result.stderr, result.stderr
