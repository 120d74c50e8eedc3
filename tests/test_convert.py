"""Converted pretrained codecs equal their reference implementations (random weights, no download).

EnCodec 24 kHz: the reference model is built by the `encodec` package's own constructor with
random weights, its codebooks filled from real speech latents (the untrained constructor
leaves them at zero), then converted; codes must be identical and decoded audio within
AUDIO_ATOL on real speech at every bandwidth, also after a checkpoint round trip.
"""

from __future__ import annotations

import warnings

import pytest
import soundfile as sf
import torch

from codec.audio import AudioCodec, load_checkpoint, save_pretrained
from codec.audio.convert import convert_encodec, encodec_config
from codec.audio.io import resample

from .conftest import SAMPLES

encodec = pytest.importorskip("encodec")

BANDWIDTHS = [1.5, 3.0, 6.0, 12.0, 24.0]
AUDIO_ATOL = 1e-5  # decoded audio peaks near 0.1 here; the measured difference is 0.0
CLIP = 28800  # 1.2 s at 24 kHz: 90 frames of 320 samples


def _speech_24k(name: str, length: int) -> torch.Tensor:
    data, sr = sf.read(SAMPLES / name, dtype="float32")
    return resample(torch.from_numpy(data), sr, 24000)[:length]


def _fill_codebooks(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give each RVQ level distinct codes near the residuals of x, and plausible EMA statistics."""
    residual = model.encoder(x).transpose(1, 2).flatten(0, 1)  # [N, D]
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        picks = residual[torch.randint(len(residual), (book.codebook_size,))]
        book.embed.copy_(picks + 0.1 * residual.std() * torch.randn_like(picks))
        book.cluster_size.uniform_(2.0, 50.0)
        book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
        book.inited.fill_(1.0)
        residual = residual - book.decode(book.encode(residual))


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # encodec uses the old torch weight_norm
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.8, 1.2))  # g != |v|: a swapped g/v would show
        _fill_codebooks(model, _speech_24k("librivox_sense_0880.flac", 48000)[None, None])
    return model.eval()


@pytest.fixture(scope="module")
def converted(reference) -> AudioCodec:
    return convert_encodec(reference)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Two real speech clips at 24 kHz: [2, 1, CLIP]."""
    names = ["arctic_slt_a0009.flac", "arctic_awb_a0007.flac"]
    return torch.stack([_speech_24k(n, CLIP) for n in names])[:, None]


def _reference_codes(reference, x: torch.Tensor, kbps: float) -> torch.Tensor:
    reference.set_target_bandwidth(kbps)
    (codes, scale), = reference.encode(x)
    assert scale is None
    return codes


def test_config_is_encodec_24khz(reference, converted):
    config = encodec_config(reference)
    assert config.sample_rate == 24000 and config.hop_length == 320 and config.frame_rate == 75
    assert (config.seanet.causal, config.seanet.pad_mode, config.seanet.norm) == (True, "reflect", "weight_norm")
    assert not config.seanet.true_skip and config.seanet.lstm_layers == 2
    assert config.quantizer.num_codebooks == 32 and config.quantizer.codebook_size == 1024
    assert [converted.num_codebooks_for_bandwidth(bw) for bw in BANDWIDTHS] == [2, 4, 8, 16, 32]
    assert sum(p.numel() for p in converted.parameters()) == sum(p.numel() for p in reference.parameters())


def test_codebooks_are_initialised(reference, converted):
    for level, layer in zip(converted.quantizer.levels, reference.quantizer.vq.layers):
        book = level.codebook
        assert bool(book.initialized)
        assert torch.equal(book.embedding, layer._codebook.embed)
        assert torch.equal(book.cluster_size, layer._codebook.cluster_size)
        assert torch.equal(book.embedding_sum, layer._codebook.embed_avg)


@pytest.mark.parametrize("kbps", BANDWIDTHS)
@torch.no_grad()
def test_codes_and_audio_equal_reference(reference, converted, clips, kbps):
    ref_codes = _reference_codes(reference, clips, kbps)
    n_q = converted.num_codebooks_for_bandwidth(kbps)
    codes = converted.encode(clips, n_q)
    assert codes.shape == ref_codes.shape == (2, n_q, CLIP // 320)
    assert len(codes.unique()) > 20  # the codebooks are really in use
    assert torch.equal(codes, ref_codes)
    ref_audio = reference.decode([(ref_codes, None)])
    audio = converted.decode(codes, CLIP)
    assert audio.shape == ref_audio.shape == clips.shape
    assert ref_audio.abs().max() > 0.01
    torch.testing.assert_close(audio, ref_audio, atol=AUDIO_ATOL, rtol=0)


@torch.no_grad()
def test_any_length(reference, converted, clips):
    """At a length that is not a multiple of the hop, encoder and decoder still equal the
    reference; only the last frame's codes may differ, because AudioCodec zero-pads the input
    to whole frames where EnCodec reflect-pads that frame inside each conv."""
    x = clips[..., : CLIP - 123]
    torch.testing.assert_close(converted.encoder(x), reference.encoder(x), atol=1e-6, rtol=0)
    ref_codes = _reference_codes(reference, x, 6.0)
    codes = converted.encode(x, 8)
    assert codes.shape == ref_codes.shape
    assert torch.equal(codes[..., :-1], ref_codes[..., :-1])
    torch.testing.assert_close(converted.decode(ref_codes, x.shape[-1]), reference(x), atol=AUDIO_ATOL, rtol=0)


@torch.no_grad()
def test_checkpoint_round_trip_keeps_equality(reference, converted, clips, tmp_path):
    folder = save_pretrained(converted, tmp_path / "encodec_24khz", {"license": "MIT", "source": "random test"})
    loaded = load_checkpoint(folder)
    assert loaded.config == converted.config
    for (name, a), (_, b) in zip(sorted(converted.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
    ref_codes = _reference_codes(reference, clips, 6.0)
    codes = loaded.encode(clips, loaded.num_codebooks_for_bandwidth(6.0))
    assert torch.equal(codes, ref_codes)
    ref_audio = reference.decode([(ref_codes, None)])
    torch.testing.assert_close(loaded.decode(codes, CLIP), ref_audio, atol=AUDIO_ATOL, rtol=0)


def test_encodec_48khz_names_what_is_missing():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    with pytest.raises(ValueError, match="time_group_norm") as error:
        convert_encodec(model)
    assert "normalisation" in str(error.value) and "overlap-add" in str(error.value)
