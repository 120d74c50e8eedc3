"""Official checkpoints by name or file: `encodec_24khz` from the cache, from a file path, offline errors."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio import from_pretrained
from codec.audio.bitstream import read_cdc
from codec.audio.convert import encodec_config
from codec.audio.pretrained import PRETRAINED
from codec.errors import CodecError

from .test_convert import (CLIP, SECONDS_48K, _reference_codes, _stereo_48k, clips, reference,  # noqa: F401
                           reference_48k)

ENTRY = PRETRAINED["encodec_24khz"]


@pytest.fixture()
def official_file(tmp_path, reference, monkeypatch):  # noqa: F811
    """The reference model's state dict saved as the official file name in a private hub cache."""
    monkeypatch.setenv("CODEC_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CODEC_OFFLINE", "1")
    path = tmp_path / "hub" / ENTRY.filename
    path.parent.mkdir()
    torch.save(reference.state_dict(), path)
    return path


def test_registry_config_is_the_reference_config(reference):  # noqa: F811
    assert ENTRY.config() == encodec_config(reference)


def test_by_name_from_the_cache_equals_the_reference(official_file, reference, clips):  # noqa: F811
    model = from_pretrained("encodec_24khz")
    with torch.no_grad():
        for kbps in (1.5, 6.0, 24.0):
            n_q = model.config.token_spec.n_q_for_kbps(kbps)
            assert torch.equal(model.encode(clips, n_q), _reference_codes(reference, clips, kbps))


def test_cli_takes_the_official_file_path(official_file, tmp_path):
    wav, cdc, out = tmp_path / "in.wav", tmp_path / "in.cdc", tmp_path / "out.wav"
    sf.write(wav, torch.randn(CLIP).mul(0.05).numpy(), 24000)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["encode", str(wav), "-o", str(cdc), "--model", str(official_file),
                                     "--bandwidth", "6"])
    assert result.exit_code == 0, result.stderr
    header, codes = read_cdc(cdc)
    assert codes.shape[1] == 8 and header.sample_rate == 24000
    result = runner.invoke(cli.app, ["decode", str(cdc), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert sf.info(out).frames == CLIP
    listing = runner.invoke(cli.app, ["models"])
    assert "encodec_24khz" in listing.stdout and "14.85 M" in listing.stdout and str(official_file) in listing.stdout


def test_offline_without_the_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CODEC_OFFLINE", "1")
    with pytest.raises(CodecError, match=f"download {ENTRY.url} and put it at .*{ENTRY.filename}"):
        from_pretrained("encodec_24khz")


def test_a_broken_official_file_is_a_clear_error(tmp_path):
    bad = tmp_path / ENTRY.filename
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError, match="is not a usable encodec_24khz checkpoint"):
        from_pretrained(bad)
    other = tmp_path / "weights.th"
    other.write_bytes(b"x")
    with pytest.raises(CodecError, match="neither a model folder nor a known official checkpoint"):
        from_pretrained(other)


@pytest.mark.parametrize("name, kwargs", [
    ("dac_44khz", {}),
    ("dac_24khz", {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 32,
                   "sample_rate": 24000}),
    ("dac_16khz", {"encoder_rates": [2, 4, 5, 8], "decoder_rates": [8, 5, 4, 2], "n_codebooks": 12,
                   "sample_rate": 16000}),
])
def test_dac_registry_configs_are_the_released_ones(name, kwargs):
    """Each entry's config equals the one read off DAC's own model (built on the meta device)."""
    dac = pytest.importorskip("dac")
    from codec.audio import AudioCodec
    from codec.audio.convert import dac_config

    with torch.device("meta"):
        reference = dac.DAC(**kwargs)
        ours = AudioCodec(PRETRAINED[name].config())
    assert PRETRAINED[name].config() == dac_config(reference)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.slow
def test_encodec_48khz_file_through_the_cli(reference_48k, tmp_path):  # noqa: F811
    """The 48 kHz official file name -> registry config (equal to the converter's), then a 2.5 s
    stereo file is encoded in 3 RMS-normalised segments, listed by `codec info`, and decoded."""
    entry = PRETRAINED["encodec_48khz"]
    assert entry.config() == encodec_config(reference_48k)
    official = tmp_path / entry.filename
    torch.save(reference_48k.state_dict(), official)
    wav, cdc, out = tmp_path / "st.wav", tmp_path / "st.cdc", tmp_path / "st.flac"
    sf.write(wav, _stereo_48k()[0].T.numpy(), 48000)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["encode", str(wav), "-o", str(cdc), "--model", str(official), "--bandwidth", "6"])
    assert result.exit_code == 0, result.stderr
    batched = tmp_path / "batched.cdc"
    result = runner.invoke(cli.app, ["encode", str(wav), "-o", str(batched), "--model", str(official), "--n-q", "4",
                                     "--batch", "4"])  # the two full segments in one batch
    assert result.exit_code == 0, result.stderr
    header, codes = read_cdc(cdc)
    assert (read_cdc(batched)[1] == codes).float().mean() > 0.9  # equal but for near ties
    assert codes.shape == (1, 4, 378) and header.channels == 1 and len(header.scales) == 3
    info = runner.invoke(cli.app, ["info", str(cdc)])
    assert "3 of 48000 samples every 47520, RMS-normalised" in info.stdout
    result = runner.invoke(cli.app, ["decode", str(cdc), "-o", str(out), "--model", str(official)])
    assert result.exit_code == 0, result.stderr
    decoded, sr = sf.read(out, dtype="float32")
    assert sr == 48000 and decoded.shape == (SECONDS_48K, 2) and abs(decoded).max() > 0.01
