"""AudioCodec interface, bitrate control and checkpoints."""

import json

import pytest
import torch

from codec.audio import AudioCodec, from_pretrained, load_checkpoint, model_fingerprint, save_pretrained
from codec.audio.presets import encodec_24khz, speech_16khz, tiny
from codec.errors import CodecError


def test_speech_preset_bandwidths_and_token_spec():
    config = speech_16khz()
    assert config.frame_rate == 50
    assert config.token_spec.bandwidths() == pytest.approx([0.5 * n for n in range(1, 13)])
    codec = AudioCodec(config)
    assert codec.config.token_spec.n_q_for_kbps(1.5) == 3
    assert codec.config.token_spec.n_q_for_kbps(6) == 12
    assert codec.config.token_spec.n_q_for_kbps(2.2) == 4
    with pytest.raises(ValueError, match="lowest bitrate, 0.5 kbps"):
        codec.config.token_spec.n_q_for_kbps(0.3)
    codec.set_num_codebooks(3)
    assert codec.token_spec.kbps == pytest.approx(1.5)
    assert codec.token_spec.latent_dim == 128


def test_encodec_like_preset_matches_published_bitrates():
    config = encodec_24khz()
    assert config.frame_rate == 75
    assert [config.token_spec.bandwidths()[n - 1] for n in (2, 4, 8, 16, 32)] == pytest.approx([1.5, 3, 6, 12, 24])


def test_set_num_codebooks_controls_codes_and_quality(speech):
    torch.manual_seed(0)
    codec = AudioCodec(tiny())
    x = torch.from_numpy(speech[0][None, None, :8000])
    codec.train()
    with torch.no_grad():
        codec(x)  # k-means initialisation of every level on this clip
    codec.eval()
    with torch.no_grad():
        errors = []
        for n in range(1, 5):
            codec.set_num_codebooks(n)
            codes = codec.encode(x)
            assert codes.shape == (1, n, 8000 // 16)
            assert codes.dtype == torch.long and codes.max() < 64
            latent = codec.encode_latent(x)
            errors.append(torch.mean((codec.quantizer.decode(codes) - latent) ** 2).item())
        assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]
    with pytest.raises(ValueError, match="1 to 4"):
        codec.set_num_codebooks(5)


def test_decode_of_encode_equals_forward_in_eval(speech):
    codec = AudioCodec(tiny()).eval()
    x = torch.from_numpy(speech[0][None, None, 1000:3001])
    with torch.no_grad():
        out = codec(x, n_q=2)
        codes = codec.encode(x, n_q=2)
        torch.testing.assert_close(out.quantizer.codes, codes)
        torch.testing.assert_close(codec.decode(codes, length=x.shape[-1]), out.audio, atol=1e-6, rtol=0)
        z = codec.encode_latent(x)
        assert z.shape == (1, 16, -(-2001 // 16))
        assert codec.decode_latent(z).shape == (1, 1, z.shape[-1] * 16)


def test_checkpoint_round_trip(tmp_path, speech):
    torch.manual_seed(1)
    codec = AudioCodec(tiny()).eval()
    path = save_pretrained(codec, tmp_path / "m", {"license": "MIT"})
    document = json.loads((path / "config.json").read_text())
    assert document["format_version"] == 2 and document["config"]["seanet"]["ratios"] == [4, 2, 2]
    loaded = load_checkpoint(path)
    assert loaded.config == codec.config
    assert model_fingerprint(loaded) == model_fingerprint(codec)
    x = torch.from_numpy(speech[0][None, None, :4000])
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), codec.encode(x))
        torch.testing.assert_close(loaded(x).audio, codec(x).audio)
    with pytest.raises(CodecError, match="already exists"):
        save_pretrained(codec, path)


def test_fingerprint_changes_with_any_weight():
    codec = AudioCodec(tiny())
    before = model_fingerprint(codec)
    with torch.no_grad():
        next(codec.decoder.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(codec) != before


def test_registry_finds_models_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tmp_path))
    codec = AudioCodec(tiny())
    save_pretrained(codec, tmp_path / "my-codec")
    loaded = from_pretrained("my-codec")
    assert model_fingerprint(loaded) == model_fingerprint(codec)
    # bundled audio, image and video models, then user models
    with pytest.raises(CodecError, match="registered: devspeech_16khz, devspeech_16khz_v2, devspeech_16khz_v3, "
                                         "devspeech_16khz_v4, devspeech_16khz_v5, devspeech_16khz_v6, "
                                         "devspeech_16khz_v7, digits_conv, digits_multiscale, moving_digits, "
                                         "my-codec"):
        from_pretrained("nope")


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: (p / "model.safetensors").write_bytes(b"garbage"), "not a readable safetensors"),
    (lambda p: (p / "config.json").write_text("{"), "not valid JSON"),
    (lambda p: (p / "config.json").write_text(json.dumps({"format_version": 9, "model_type": "audio_codec"})),
     "format version 9"),
    (lambda p: (p / "config.json").write_text(json.dumps(
        {"format_version": 1, "model_type": "audio_codec", "config": {"sample_rate": "fast"}})), "invalid config"),
    (lambda p: (p / "config.json").unlink(), "needs config.json"),
    (lambda p: (p / "config.json").write_text(json.dumps({"format_version": 2, "model_type": "vocoder"})),
     "model_type must be one of audio_codec"),
])
def test_broken_checkpoints_give_clear_errors(tmp_path, corrupt, message):
    path = save_pretrained(AudioCodec(tiny()), tmp_path / "m")
    corrupt(path)
    with pytest.raises(CodecError, match=message):
        load_checkpoint(path)


def test_format_version_1_folders_load_with_the_same_fingerprint(tmp_path, speech):
    """Version 1 named the level count ``num_codebooks``; such folders load, and a model keeps its
    fingerprint, so .cdc files written before the rename still decode."""
    torch.manual_seed(2)
    codec = AudioCodec(tiny()).eval()
    path = save_pretrained(codec, tmp_path / "m")
    document = json.loads((path / "config.json").read_text())
    quantizer = document["config"]["quantizer"]
    document["config"]["quantizer"] = {("num_codebooks" if k == "n_q" else k): v for k, v in quantizer.items()}
    (path / "config.json").write_text(json.dumps({**document, "format_version": 1}))
    loaded = load_checkpoint(path)
    assert loaded.config == codec.config and loaded.config.quantizer.n_q == 4
    assert model_fingerprint(loaded) == model_fingerprint(codec)
    (path / "config.json").write_text(json.dumps({**document, "format_version": 2}))  # v2 has no num_codebooks
    with pytest.raises(CodecError, match="unknown key config.quantizer.num_codebooks"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path):
    path = save_pretrained(AudioCodec(tiny()), tmp_path / "m")
    other = save_pretrained(AudioCodec(tiny(channels=2)), tmp_path / "other")
    (path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CodecError, match="do not match its config"):
        load_checkpoint(path)
