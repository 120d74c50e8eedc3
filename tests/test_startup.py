"""Start-up cost: `codec info` and `codec --help` import no model stack (info not even torch);
subcommands import what they need inside their handlers."""

import json
import subprocess
import sys

import soundfile as sf
from typer.testing import CliRunner

import cli

# the stacks that cost seconds to import: none is needed to read a .cdc header or print help
HEAVY = ("torch", "torchaudio", "soundfile", "scipy", "matplotlib", "sklearn", "skimage", "pesq", "pystoi",
         "tensorboard", "lhotse", "librosa", "codec.train", "codec.eval", "codec.audio.model", "codec.audio.compress",
         "slm.train", "slm.transformer")

# runs the CLI with the arguments given after -c, then prints what it imported as a last JSON line
SCRIPT = """
import json, sys
import cli
try:
    cli.main()
    code = 0
except SystemExit as e:
    code = e.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}))
"""


def codec_subprocess(*args) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout before the report, stderr, heavy modules imported) of `codec ARGS` in a fresh Python."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True, text=True,
                            timeout=120)
    *lines, report = result.stdout.rstrip("\n").split("\n")
    found = json.loads(report)
    heavy = [m for m in found["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    return found["exit"], "\n".join(lines), result.stderr, heavy


def test_info_reads_a_file_without_torch(tmp_path, tiny_model_dir, speech, monkeypatch):
    monkeypatch.setenv("CODEC_THREADS", "1")
    data, sr = speech
    sf.write(tmp_path / "a.wav", data[:16000], sr)
    result = CliRunner().invoke(cli.app, ["encode", str(tmp_path / "a.wav"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    cdc = tmp_path / "a.cdc"

    code, out, err, heavy = codec_subprocess("info", cdc)

    assert code == 0, err
    assert heavy == []
    rows = dict(line.split(":", 1) for line in out.splitlines())
    assert rows["model"].strip() == "tiny-test"
    assert rows["duration"].strip() == "1.000 s (16000 samples at 16000 Hz)"
    assert rows["channels"].strip() == "1"
    assert rows["actual bitrate"].strip().startswith(f"{cdc.stat().st_size * 8 / 1000:.3f} kbps")


def test_info_of_a_broken_file_is_one_sentence_without_torch(tmp_path):
    bad = tmp_path / "bad.cdc"
    bad.write_bytes(b"CDC\x00" + bytes(10))

    code, out, err, heavy = codec_subprocess("info", bad)

    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err
    assert heavy == []


def test_help_imports_no_heavy_stack():
    code, out, err, heavy = codec_subprocess("--help")
    assert code == 0 and "encode" in out and "--threads" in out
    assert heavy == []


def test_lazy_package_names_resolve_to_their_modules():
    import codec
    import codec.audio
    from codec.audio import AudioCodec, from_pretrained, model_fingerprint
    from codec.audio.model import AudioCodec as ModelAudioCodec
    from codec.audio.registry import from_pretrained as registry_from_pretrained
    from codec.checkpoint import model_fingerprint as checkpoint_fingerprint
    from codec.tokens import TokenSpec

    assert AudioCodec is ModelAudioCodec and from_pretrained is registry_from_pretrained
    assert model_fingerprint is checkpoint_fingerprint and codec.TokenSpec is TokenSpec
    assert {"AudioCodec", "streaming", "save_pretrained"} <= set(dir(codec.audio))
    try:
        codec.audio.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
