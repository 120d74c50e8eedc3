"""The `codec` command line: round trips, bitrate control and bad input (one sentence, no output)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio import AudioCodec, save_pretrained
from codec.audio.bitstream import header_overhead, read_cdc
from codec.audio.presets import tiny

runner = CliRunner()


def run(*args: str):
    return runner.invoke(cli.app, [str(a) for a in args])


def assert_clean_failure(result, *missing_outputs):
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output + result.stderr
    for path in missing_outputs:
        assert not path.exists()


def speech_like(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.linspace(1, 0.5, channels)[None]
    return (tone + 0.02 * rng.standard_normal((len(t), channels))).astype(np.float32)


ACCEPTED = {  # name: (sample rate, seconds, channels, soundfile format, subtype)
    "pcm8.wav": (16000, 0.5, 1, "WAV", "PCM_U8"),
    "pcm24.wav": (16000, 0.5, 1, "WAV", "PCM_24"),
    "float.wav": (16000, 0.5, 1, "WAV", "FLOAT"),
    "stereo 44k.wav": (44100, 0.4, 2, "WAV", "PCM_16"),
    "six channels 48k.wav": (48000, 0.3, 6, "WAV", "PCM_16"),
    "narrow 8k.wav": (8000, 0.5, 1, "WAV", "PCM_16"),
    "hires 96k.wav": (96000, 0.2, 1, "WAV", "PCM_24"),
    "shorter than a frame.wav": (16000, 10 / 16000, 1, "WAV", "PCM_16"),
    "a wav named.mp3": (16000, 0.3, 1, "WAV", "PCM_16"),
    "größe – 音声.flac": (22050, 0.3, 1, "FLAC", "PCM_16"),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_round_trip_keeps_rate_length_and_channels(tmp_path, tiny_model_dir, name):
    sr, seconds, channels, fmt, subtype = ACCEPTED[name]
    src = tmp_path / name
    sf.write(src, speech_like(sr, seconds, channels), sr, format=fmt, subtype=subtype)
    cdc, wav = tmp_path / "out file.cdc", tmp_path / "back.wav"
    result = run("encode", src, "-o", cdc, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.stderr
    result = run("decode", cdc, "-o", wav)
    assert result.exit_code == 0, result.stderr
    original, decoded = sf.info(src), sf.info(wav)
    assert (decoded.samplerate, decoded.frames, decoded.channels) == (sr, original.frames, channels)
    header, codes = read_cdc(cdc)
    frames = math.ceil(math.ceil(original.frames * 16000 / sr) / 16)
    assert codes.shape == (channels, 4, frames)
    # size bound: nominal bitrate x duration (in whole frames) x channels / 8 + the stated header
    nominal_bits = header.nominal_bitrate * frames / header.frame_rate * channels
    assert cdc.stat().st_size <= math.ceil(nominal_bits / 8) + header_overhead(header)


def test_decoded_audio_matches_the_library(tmp_path, tiny_model_dir, speech):
    from codec.audio import load_checkpoint

    src, cdc, wav = tmp_path / "s.wav", tmp_path / "s.cdc", tmp_path / "s2.wav"
    sf.write(src, speech[0][:8000], 16000, subtype="FLOAT")
    assert run("encode", src, "-o", cdc, "--model", tiny_model_dir).exit_code == 0
    assert run("decode", cdc, "-o", wav).exit_code == 0
    model = load_checkpoint(tiny_model_dir)
    with torch.no_grad():
        expected = model(torch.from_numpy(speech[0][None, None, :8000])).audio[0, 0].numpy()
    got, _ = sf.read(wav, dtype="float32")
    assert np.max(np.abs(got - np.clip(expected, -1, 1))) < 1.5 / 32768  # 16-bit output


def test_bandwidth_and_n_q_select_codebooks(tmp_path, tiny_model_dir, speech):
    src = tmp_path / "s.wav"
    sf.write(src, speech[0][:4000], 16000)
    # tiny model: 1000 frames/s x 6 bits = 6 kbps per codebook
    for args, expected in [(("--n-q", "2"), 2), (("--bandwidth", "18"), 3), (("--bandwidth", "24"), 4)]:
        out = tmp_path / f"{expected}.cdc"
        assert run("encode", src, "-o", out, "--model", tiny_model_dir, *args).exit_code == 0
        assert read_cdc(out)[0].n_q == expected
    info = run("info", tmp_path / "3.cdc")
    assert info.exit_code == 0
    assert "nominal bitrate:    18.000 kbps per channel" in info.stdout
    assert "model fingerprint:  " in info.stdout and "1 at 1000 Hz" not in info.stdout
    assert_clean_failure(run("encode", src, "-o", tmp_path / "x.cdc", "--model", tiny_model_dir, "--bandwidth", "1"),
                         tmp_path / "x.cdc")
    assert_clean_failure(run("encode", src, "-o", tmp_path / "y.cdc", "--model", tiny_model_dir, "--n-q", "9"),
                         tmp_path / "y.cdc")
    assert_clean_failure(run("encode", src, "-o", tmp_path / "z.cdc", "--model", tiny_model_dir,
                             "--n-q", "2", "--bandwidth", "6"), tmp_path / "z.cdc")


@pytest.mark.parametrize("args, message", [
    (("--n-q", "0"), "--n-q must be between 1 and 4 for this model, got 0"),  # was taken as "not given"
    (("--n-q", "-3"), "--n-q must be between 1 and 4"),
    (("--bandwidth", "100"), "100 kbps is above the highest bitrate, 24 kbps"),  # was capped silently
    (("--bandwidth", "inf"), "finite"),
    (("--bandwidth", "nan"), "finite"),  # said "below"
    (("--bandwidth", "-1"), "below the lowest bitrate, 6 kbps"),
])
def test_impossible_bitrates_are_refused(tmp_path, tiny_model_dir, speech, args, message):
    src, out = tmp_path / "s.wav", tmp_path / "s.cdc"
    sf.write(src, speech[0][:4000], 16000)
    result = run("encode", src, "-o", out, "--model", tiny_model_dir, *args)
    assert_clean_failure(result, out)
    assert result.exit_code == 1 and message in result.stderr


def test_eval_refuses_a_bitrate_above_the_model(tmp_path, tiny_model_dir):
    sf.write(tmp_path / "clip.wav", speech_like(16000, 0.5, 1), 16000)
    result = run("eval", "--model", tiny_model_dir, "--data", tmp_path, "--out", tmp_path / "r", "--bandwidth", "100")
    assert_clean_failure(result, tmp_path / "r" / "results.json")
    assert "above the highest bitrate" in result.stderr


@pytest.mark.parametrize("device, message", [
    ("banana", "Unknown device 'banana'"),  # was reported as weights not matching the config
    ("cuda:7", "is not available"),
])
def test_bad_devices_are_named(tmp_path, tiny_model_dir, speech, device, message):
    src, out = tmp_path / "s.wav", tmp_path / "s.cdc"
    sf.write(src, speech[0][:2000], 16000)
    result = run("encode", src, "-o", out, "--model", tiny_model_dir, "--device", device)
    assert_clean_failure(result, out)
    assert result.exit_code == 1 and message in result.stderr and "weights" not in result.stderr
    assert run("encode", src, "-o", out, "--model", tiny_model_dir).exit_code == 0
    result = run("decode", out, "-o", tmp_path / "s2.wav", "--device", device)
    assert_clean_failure(result, tmp_path / "s2.wav")
    assert message in result.stderr


def test_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, tiny_model_dir, speech):
    """s.flac and other/s.mp3 both map to out/s.cdc: refused before any work (the second input used
    to replace the first silently with --force, and to blame a file it wrote itself without)."""
    (tmp_path / "other").mkdir()
    sf.write(tmp_path / "s.flac", speech[0][:2000], 16000)
    sf.write(tmp_path / "other" / "s.wav", speech[0][2000:4000], 16000)
    for force in ([], ["--force"]):
        result = run("encode", tmp_path / "s.flac", tmp_path / "other" / "s.wav", "-o", tmp_path / "out",
                     "--model", tiny_model_dir, *force)
        assert_clean_failure(result, tmp_path / "out")  # not even the folder is made
        assert "would both be written to" in result.stderr
    sf.write(tmp_path / "s.wav", speech[0][:2000], 16000)  # s.flac and s.wav next to each other: s.cdc twice
    result = run("encode", tmp_path / "s.flac", tmp_path / "s.wav", "--model", tiny_model_dir)
    assert_clean_failure(result, tmp_path / "s.cdc")


def test_output_names_that_cannot_be_meant(tmp_path, tiny_model_dir, speech):
    sf.write(tmp_path / "a.wav", speech[0][:2000], 16000)
    sf.write(tmp_path / "b.wav", speech[0][2000:4000], 16000)
    result = run("encode", tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "single.cdc", "--model",
                 tiny_model_dir)
    assert_clean_failure(result, tmp_path / "single.cdc")  # used to create a folder named single.cdc/
    assert "must be a folder" in result.stderr
    result = run("encode", tmp_path / "a.wav", "-o", "", "--model", tiny_model_dir)
    assert_clean_failure(result)  # used to write into the current folder
    assert "empty" in result.stderr


def test_files_name_a_model_folder_without_its_path(tmp_path, tiny_model_dir, speech, monkeypatch):
    """A .cdc made with --model FOLDER records the folder's name and fingerprint (it used to record the
    absolute local path); decoding finds the model by that name, or takes --model."""
    src, out = tmp_path / "s.wav", tmp_path / "s.cdc"
    sf.write(src, speech[0][:4000], 16000)
    assert run("encode", src, "-o", out, "--model", tiny_model_dir).exit_code == 0
    header = read_cdc(out)[0]
    assert header.model == "tiny-test" and str(tmp_path) not in out.read_bytes().decode("latin-1")
    assert str(tiny_model_dir.parent) not in out.read_bytes().decode("latin-1")
    assert run("decode", out, "-o", tmp_path / "by-name.wav").exit_code == 0  # found in CODEC_MODELS_DIR
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tmp_path / "empty"))
    cli._load_model.cache_clear()
    result = run("decode", out, "-o", tmp_path / "nowhere.wav")
    assert_clean_failure(result, tmp_path / "nowhere.wav")
    assert "'tiny-test'" in result.stderr and "--model" in result.stderr
    assert run("decode", out, "-o", tmp_path / "given.wav", "--model", tiny_model_dir).exit_code == 0


def test_info_takes_several_files(tmp_path, tiny_model_dir, speech):
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", speech[0][:3000], 16000)
        assert run("encode", tmp_path / f"{name}.wav", "--model", tiny_model_dir).exit_code == 0
    result = run("info", tmp_path / "a.cdc", tmp_path / "b.cdc")
    assert result.exit_code == 0 and result.stdout.count("model fingerprint:") == 2
    result = run("info", tmp_path / "a.cdc", tmp_path / "missing.cdc")
    assert result.exit_code == 1 and "a.cdc" in result.stdout and "missing.cdc" in result.stderr


def test_downmix_codes_one_stream(tmp_path, tiny_model_dir):
    src = tmp_path / "st.wav"
    sf.write(src, speech_like(16000, 0.3, 2), 16000)
    assert run("encode", src, "--downmix", "--model", tiny_model_dir).exit_code == 0
    assert read_cdc(tmp_path / "st.cdc")[1].shape[0] == 1
    assert run("decode", tmp_path / "st.cdc", "-o", tmp_path / "mono.wav").exit_code == 0
    assert sf.info(tmp_path / "mono.wav").channels == 1


def bad_inputs(tmp_path):
    good = speech_like(16000, 0.2, 1)
    sf.write(tmp_path / "header-only.wav", good[:0], 16000)
    sf.write(tmp_path / "full.wav", good, 16000)
    data = (tmp_path / "full.wav").read_bytes()
    nan, inf = good.copy(), good.copy()
    nan[100], inf[200] = np.nan, np.inf
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "inf.wav", inf, 16000, subtype="FLOAT")
    files = {
        "empty.wav": b"",
        "truncated.wav": data[: len(data) // 2],
        "random.wav": np.random.default_rng(0).bytes(5000),
        "text.flac": b"this is not audio, just text\n" * 20,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return ["empty.wav", "header-only.wav", "truncated.wav", "random.wav", "text.flac", "nan.wav", "inf.wav",
            "missing.wav"]


def test_bad_audio_inputs_fail_cleanly(tmp_path, tiny_model_dir):
    for name in bad_inputs(tmp_path):
        out = tmp_path / (name + ".cdc")
        assert_clean_failure(run("encode", tmp_path / name, "-o", out, "--model", tiny_model_dir), out)


def test_unwritable_output_fails_before_work(tmp_path, tiny_model_dir, speech):
    src = tmp_path / "s.wav"
    sf.write(src, speech[0][:1000], 16000)
    assert_clean_failure(run("encode", src, "-o", tmp_path / "no" / "such" / "dir.cdc", "--model", tiny_model_dir))
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_clean_failure(run("encode", src, "-o", locked / "x.cdc", "--model", tiny_model_dir), locked / "x.cdc")


def test_bad_cdc_files_fail_cleanly(tmp_path, tiny_model_dir, speech):
    src, cdc = tmp_path / "s.wav", tmp_path / "s.cdc"
    sf.write(src, speech[0][:4000], 16000)
    assert run("encode", src, "-o", cdc, "--model", tiny_model_dir).exit_code == 0
    data = cdc.read_bytes()
    (tmp_path / "truncated.cdc").write_bytes(data[: len(data) - 10])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "corrupted.cdc").write_bytes(bytes(flipped))
    (tmp_path / "foreign.cdc").write_bytes(src.read_bytes())
    for name in ["truncated.cdc", "corrupted.cdc", "foreign.cdc", "missing.cdc"]:
        assert_clean_failure(run("decode", tmp_path / name, "-o", tmp_path / f"{name}.wav"), tmp_path / f"{name}.wav")
        assert_clean_failure(run("info", tmp_path / name))
    # a file made by one model, decoded with another
    torch.manual_seed(5)
    other = save_pretrained(AudioCodec(tiny()), tmp_path / "other-model")
    result = run("decode", cdc, "-o", tmp_path / "other.wav", "--model", other)
    assert_clean_failure(result, tmp_path / "other.wav")
    assert "different model" in result.stderr


def test_existing_outputs_need_force(tmp_path, tiny_model_dir, speech):
    src, cdc = tmp_path / "s.wav", tmp_path / "s.cdc"
    sf.write(src, speech[0][:2000], 16000)
    cdc.write_bytes(b"precious")
    assert_clean_failure(run("encode", src, "--model", tiny_model_dir))
    assert cdc.read_bytes() == b"precious"
    assert run("encode", src, "--model", tiny_model_dir, "--force").exit_code == 0
    assert read_cdc(cdc)[0].num_samples == 2000
    # decoding next to the original would overwrite it
    original = src.read_bytes()
    assert_clean_failure(run("decode", cdc))
    assert src.read_bytes() == original


def test_several_files_into_a_folder(tmp_path, tiny_model_dir, speech):
    names = ["a.wav", "b.wav", "c.wav"]
    for i, name in enumerate(names):
        sf.write(tmp_path / name, speech[0][i * 1000 : (i + 2) * 1000], 16000)
    result = run("encode", *[tmp_path / n for n in names], "-o", tmp_path / "codes", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.stderr
    cdcs = sorted((tmp_path / "codes").glob("*.cdc"))
    assert [p.name for p in cdcs] == ["a.cdc", "b.cdc", "c.cdc"]
    assert run("decode", *cdcs, "-o", tmp_path / "wavs").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "wavs").iterdir()) == names
    # one bad file among good ones: the others are still written, the exit code says it failed
    (tmp_path / "bad.wav").write_bytes(b"")
    result = run("encode", tmp_path / "a.wav", tmp_path / "bad.wav", "-o", tmp_path / "mixed", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "1 of 2 files failed" in result.stderr
    assert (tmp_path / "mixed" / "a.cdc").exists() and not (tmp_path / "mixed" / "bad.cdc").exists()


def test_models_lists_the_user_folder(tmp_path, monkeypatch, tiny_model_dir, speech):
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tiny_model_dir.parent))
    result = run("models")
    assert result.exit_code == 0
    assert "tiny-test" in result.stdout and "16000" in result.stdout and "MIT" in result.stdout
    src = tmp_path / "s.wav"
    sf.write(src, speech[0][:2000], 16000)
    assert run("encode", src, "--model", "tiny-test").exit_code == 0
    assert read_cdc(tmp_path / "s.cdc")[0].model == "tiny-test"
    assert_clean_failure(run("encode", src, "-o", tmp_path / "t.cdc", "--model", "unknown-name"), tmp_path / "t.cdc")


def test_console_script_runs_without_traceback(tmp_path):
    """The installed entry point, as a user runs it, in a separate process."""
    result = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "info", str(tmp_path / "nope.cdc")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr


def test_no_model_and_no_default_is_a_clear_error(tmp_path, speech, monkeypatch):
    import codec.audio.registry as registry

    monkeypatch.setattr(registry, "DEFAULT_MODEL", None)
    src = tmp_path / "s.wav"
    sf.write(src, speech[0][:2000], 16000)
    result = run("encode", src)
    assert_clean_failure(result, tmp_path / "s.cdc")
    assert "--model" in result.stderr


@pytest.mark.slow
def test_workers_and_concurrent_processes_give_the_serial_files(tmp_path, tiny_model_dir, speech):
    """--workers N and several `codec encode` processes writing into one folder give byte-identical
    files to coding one file after another; decoding with workers gives the same audio too."""
    names = [f"clip{i}.wav" for i in range(4)]
    for i, name in enumerate(names):
        sf.write(tmp_path / name, speech[0][i * 3000 : i * 3000 + 5000], 16000)
    inputs = [tmp_path / n for n in names]
    assert run("encode", *inputs, "-o", tmp_path / "serial", "--model", tiny_model_dir).exit_code == 0
    result = run("encode", *inputs, "-o", tmp_path / "pool", "--model", tiny_model_dir, "--workers", "2")
    assert result.exit_code == 0, result.stderr
    (tmp_path / "shared").mkdir()
    codec = [sys.executable, "-c", "import cli; cli.main()", "encode"]
    processes = [subprocess.Popen([*codec, str(src), "-o", str(tmp_path / "shared" / src.with_suffix(".cdc").name),
                                   "--model", str(tiny_model_dir)], stderr=subprocess.PIPE) for src in inputs]
    assert all(p.wait(timeout=300) == 0 for p in processes), [p.stderr.read() for p in processes]
    for name in names:
        serial = (tmp_path / "serial" / name.replace(".wav", ".cdc")).read_bytes()
        assert (tmp_path / "pool" / name.replace(".wav", ".cdc")).read_bytes() == serial
        assert (tmp_path / "shared" / name.replace(".wav", ".cdc")).read_bytes() == serial
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == sorted(n.replace(".wav", ".cdc") for n in names)
    cdcs = sorted((tmp_path / "serial").glob("*.cdc"))
    assert run("decode", *cdcs, "-o", tmp_path / "wav-serial").exit_code == 0
    assert run("decode", *cdcs, "-o", tmp_path / "wav-pool", "--workers", "3").exit_code == 0
    for name in names:
        assert (tmp_path / "wav-pool" / name).read_bytes() == (tmp_path / "wav-serial" / name).read_bytes()
