"""Converted pretrained codecs equal their reference implementations (random weights, no download).

EnCodec 24 kHz: the reference model is built by the `encodec` package's own constructor with
random weights, its codebooks filled from real speech latents (the untrained constructor
leaves them at zero), then converted; codes must be identical and decoded audio within
AUDIO_ATOL on real speech at every bandwidth, also after a checkpoint round trip.

DAC: the reference is `dac.DAC` at the 44.1 kHz configuration (full size), and scaled-down
models (narrower) of the 44.1 kHz and of the 16/24 kHz structure (an odd stride 5: DAC decodes
F frames to F * hop - 8 samples); the weight-norm gains, Snake alphas and biases are randomised
so that a misplaced tensor shows. Codes must be identical and decoded audio within AUDIO_ATOL
of DAC's own encode / quantizer / decode path on real speech at several numbers of codebooks.
"""

from __future__ import annotations

import warnings

import pytest
import soundfile as sf
import torch

from codec.audio import AudioCodec, AudioCodecConfig, load_checkpoint, save_pretrained
from codec.audio.convert import (convert_dac, convert_dac_checkpoint, convert_encodec, dac_config,
                                 dac_config_from_kwargs, dac_state_dict, encodec_config)
from codec.audio.bitstream import CdcHeader, decode_cdc, encode_cdc
from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio, resample
from codec.audio.seanet import SEANetConfig
from codec.config import config_from_dict, config_to_dict
from codec.quantization import QuantizerConfig

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
    assert config.quantizer.n_q == 32 and config.quantizer.codebook_size == 1024
    assert [converted.config.token_spec.n_q_for_kbps(bw) for bw in BANDWIDTHS] == [2, 4, 8, 16, 32]
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
    n_q = converted.config.token_spec.n_q_for_kbps(kbps)
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
    """At lengths that are not a multiple of the hop, codes and audio still equal the reference
    (the last partial frame is reflect-padded inside each conv, as EnCodec does)."""
    for cut in (123, 319, 1):
        x = clips[..., : CLIP - cut]
        ref_codes = _reference_codes(reference, x, 6.0)
        codes = converted.encode(x, 8)
        assert codes.shape == ref_codes.shape and torch.equal(codes, ref_codes)
    torch.testing.assert_close(converted.decode(ref_codes, x.shape[-1]), reference(x), atol=AUDIO_ATOL, rtol=0)


@torch.no_grad()
def test_checkpoint_round_trip_keeps_equality(reference, converted, clips, tmp_path):
    folder = save_pretrained(converted, tmp_path / "encodec_24khz", {"license": "MIT", "source": "random test"})
    loaded = load_checkpoint(folder)
    assert loaded.config == converted.config
    for (name, a), (_, b) in zip(sorted(converted.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
    ref_codes = _reference_codes(reference, clips, 6.0)
    codes = loaded.encode(clips, loaded.config.token_spec.n_q_for_kbps(6.0))
    assert torch.equal(codes, ref_codes)
    ref_audio = reference.decode([(ref_codes, None)])
    torch.testing.assert_close(loaded.decode(codes, CLIP), ref_audio, atol=AUDIO_ATOL, rtol=0)


SECONDS_48K = 120000  # 2.5 s at 48 kHz: segments at 0, 47520, 95040 (the last 24960 = 78 frames)


@pytest.fixture(scope="module")
def reference_48k() -> torch.nn.Module:
    """EnCodec 48 kHz stereo (random weights; GroupNorm gains and biases randomised too)."""
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm." in name:
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5) if name.endswith("weight") else 0.1 * torch.randn_like(p))
        x = _stereo_48k()[..., :48000]
        _fill_codebooks(model, x / x.mean(1).pow(2).mean().sqrt())  # the encoder sees RMS-normalised audio
    return model.eval()


def _stereo_48k() -> torch.Tensor:
    """[1, 2, SECONDS_48K]: a different real speech clip on each channel."""
    channels = []
    for name in ["arctic_slt_a0009.flac", "arctic_awb_a0007.flac"]:
        data, sr = sf.read(SAMPLES / name, dtype="float32")
        channels.append(resample(torch.from_numpy(data), sr, 48000)[:SECONDS_48K])
    return torch.stack(channels)[None]


@pytest.mark.slow
@torch.no_grad()
def test_encodec_48khz_stereo_segments_equal_reference(reference_48k):
    """Three 1 s segments with 1% overlap, each scaled by its RMS, joined by EnCodec's cross-fade."""
    converted = convert_encodec(reference_48k)
    config = converted.config
    assert (config.seanet.norm, config.seanet.causal, config.channels if hasattr(config, "channels") else
            config.seanet.channels) == ("time_group_norm", False, 2)
    assert (config.segment_seconds, config.segment_overlap, config.normalize) == (1.0, 0.01, True)
    assert sum(p.numel() for p in converted.parameters()) == sum(p.numel() for p in reference_48k.parameters())
    x = _stereo_48k()
    for kbps, n_q in [(3.0, 2), (12.0, 8)]:
        reference_48k.set_target_bandwidth(kbps)
        frames = reference_48k.encode(x)
        encoded = encode_audio(converted, Audio(x[0], 48000), converted.config.token_spec.n_q_for_kbps(kbps))
        header, codes = CdcHeader.for_encoded(encoded, "encodec_48khz", "0" * 16), encoded.codes
        assert codes.shape == (1, n_q, 150 + 150 + 78) and len(frames) == 3
        assert torch.equal(codes, torch.cat([c for c, _ in frames], dim=-1))
        assert header.scales == tuple(s.item() for _, s in frames) and header.normalized
        assert (header.segment_samples, header.segment_stride) == (48000, 47520)
        back, back_codes = decode_cdc(encode_cdc(header, codes))  # the scales survive the file format
        decoded = decode_audio(converted, back.encoded(back_codes)).samples
        ref_audio = reference_48k.decode(frames)[0, :, :SECONDS_48K]
        assert ref_audio.abs().max() > 0.01
        torch.testing.assert_close(decoded, ref_audio, atol=AUDIO_ATOL, rtol=0)


# --- DAC ---------------------------------------------------------------------------------------

DAC_MODELS = {
    # the released 44.1 kHz 8 kbps configuration (dac.DAC's defaults), full size
    "44khz": dict(encoder_dim=64, encoder_rates=[2, 4, 8, 8], decoder_dim=1536, decoder_rates=[8, 8, 4, 2],
                  n_codebooks=9, codebook_size=1024, codebook_dim=8, sample_rate=44100),
    # the 16 kHz (12 codebooks) and 24 kHz (32 codebooks) structure, narrower; a latent_dim of its own
    "16khz_small": dict(encoder_dim=16, encoder_rates=[2, 4, 5, 8], decoder_dim=256, decoder_rates=[8, 5, 4, 2],
                        n_codebooks=12, codebook_size=1024, codebook_dim=8, sample_rate=16000),
    "24khz_small": dict(encoder_dim=8, encoder_rates=[2, 4, 5, 8], latent_dim=96, decoder_dim=192,
                        decoder_rates=[8, 5, 4, 2], n_codebooks=32, codebook_size=256, codebook_dim=4,
                        sample_rate=24000),
}
DAC_N_Q = {"44khz": [1, 4, 9], "16khz_small": [1, 4, 12], "24khz_small": [1, 8, 32]}
DAC_SMALL = ["16khz_small", "24khz_small"]  # for the slower checks, beside the full-size one
DAC_AUDIO_ATOL = 1e-5  # decoded audio peaks near 0.1-0.4 here; measured differences are below 1e-6


def _dac():
    return pytest.importorskip("dac")


def _speech(name: str, sample_rate: int, seconds: float) -> torch.Tensor:
    data, sr = sf.read(SAMPLES / name, dtype="float32")
    x = resample(torch.from_numpy(data), sr, sample_rate)
    start = int(0.3 * sample_rate)  # skip the leading silence
    return x[start : start + int(seconds * sample_rate)]


@pytest.fixture(scope="module", params=list(DAC_MODELS))
def dac_pair(request):
    """(name, reference dac.DAC, converted AudioCodec, speech [B, 1, T] at the model's rate)."""
    dac = _dac()
    name = request.param
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dac uses the deprecated torch weight_norm
        model = dac.DAC(**DAC_MODELS[name]).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.8, 1.2))  # g != |v|: a swapped g/v would show
            elif key.endswith("alpha"):
                p.uniform_(0.5, 2.0)  # Snake alphas start at 1 everywhere
            elif key.endswith("bias"):
                p.uniform_(-0.02, 0.02)  # DAC zeroes conv biases at init
    sr = model.sample_rate
    full = name == "44khz"  # the full-size model decodes one clip (time); the small ones two
    names = ["arctic_slt_a0009.flac"] + ([] if full else ["arctic_awb_a0007.flac"])
    clips = torch.stack([_speech(n, sr, 1.0) for n in names])[:, None]
    return name, model, convert_dac(model), clips


def test_dac_config(dac_pair):
    name, reference, converted, _ = dac_pair
    config = converted.config
    assert config == dac_config(reference)
    assert config.sample_rate == reference.sample_rate and config.hop_length == reference.hop_length
    assert config.seanet.dimension == reference.latent_dim
    assert (config.quantizer.kind, config.quantizer.n_q) == ("factorized", reference.n_codebooks)
    assert config.seanet.decoder_output_deficit == (0 if name == "44khz" else 8)
    assert sum(p.numel() for p in converted.parameters()) == sum(p.numel() for p in reference.parameters())
    if name == "44khz":
        assert config.frame_rate == pytest.approx(44100 / 512)
        assert converted.config.token_spec.bandwidths()[-1] == pytest.approx(7.75, abs=0.01)  # "8 kbps"


@torch.no_grad()
def test_dac_codes_and_audio_equal_reference(dac_pair):
    name, reference, converted, clips = dac_pair
    sr, hop = reference.sample_rate, reference.hop_length
    padded = reference.preprocess(clips, sr)  # DAC zero-pads to whole frames, as AudioCodec.encode does
    latent = converted.encode_latent(clips)
    torch.testing.assert_close(latent, reference.encoder(padded), atol=1e-6, rtol=0)
    n_frames = padded.shape[-1] // hop
    for n_q in DAC_N_Q[name]:
        _, ref_codes, *_ = reference.encode(padded, n_q)
        codes = converted.encode(clips, n_q)
        assert codes.shape == ref_codes.shape == (len(clips), n_q, n_frames)
        assert len(codes.unique()) > 5 * n_q  # the codebooks are really in use
        assert torch.equal(codes, ref_codes), f"{name}, n_q={n_q}"
        ref_audio = reference.decode(reference.quantizer.from_codes(ref_codes)[0])
        audio = converted.decode(codes)
        deficit = converted.config.seanet.decoder_output_deficit
        assert ref_audio.shape[-1] == n_frames * hop - deficit and audio.shape[-1] == n_frames * hop
        assert ref_audio.abs().max() > 0.01
        torch.testing.assert_close(audio[..., : ref_audio.shape[-1]], ref_audio, atol=DAC_AUDIO_ATOL, rtol=0)
        assert not audio[..., ref_audio.shape[-1] :].any()  # samples DAC does not produce: zeros


@pytest.mark.parametrize("dac_pair", DAC_SMALL, indirect=True)
@torch.no_grad()
def test_dac_forward_equals_reference_at_any_length(dac_pair):
    """DAC's forward (encode, decode the quantized latent, trim to the input length) equals
    AudioCodec's forward at a length that is not a multiple of the hop: both zero-pad the input
    to whole frames. Where DAC's decoder stops short (16/24 kHz), our samples are zeros."""
    name, reference, converted, clips = dac_pair
    x = clips[..., :-3]  # 3 samples short of whole frames; DAC's decoder stops 8 short (odd stride)
    ref = reference(x, reference.sample_rate)
    out = converted(x)
    assert torch.equal(out.quantizer.codes, ref["codes"])
    n = ref["audio"].shape[-1]
    assert out.audio.shape == x.shape and n == x.shape[-1] - 5
    assert not out.audio[..., n:].any()
    torch.testing.assert_close(out.audio[..., :n], ref["audio"], atol=DAC_AUDIO_ATOL, rtol=0)


@pytest.mark.parametrize("dac_pair", DAC_SMALL, indirect=True)
@torch.no_grad()
def test_dac_checkpoint_round_trip_and_official_format(dac_pair, tmp_path):
    """save_pretrained / load_checkpoint keeps the conversion exact; a weights file in DAC's own
    format (``DAC.save(path, package=False)``, as released) converts without building dac.DAC."""
    name, reference, converted, clips = dac_pair
    folder = save_pretrained(converted, tmp_path / name, {"license": "MIT", "source": "random test"})
    loaded = load_checkpoint(folder)
    assert loaded.config == converted.config
    for (key, a), (_, b) in zip(sorted(converted.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), key
    padded = reference.preprocess(clips, reference.sample_rate)
    _, ref_codes, *_ = reference.encode(padded, 4)
    codes = loaded.encode(clips, 4)
    assert torch.equal(codes, ref_codes)
    ref_audio = reference.decode(reference.quantizer.from_codes(ref_codes)[0])
    torch.testing.assert_close(loaded.decode(codes)[..., : ref_audio.shape[-1]], ref_audio, atol=DAC_AUDIO_ATOL, rtol=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save(str(tmp_path / "weights.pth"), package=False)
    checkpoint = torch.load(tmp_path / "weights.pth", map_location="cpu", weights_only=True)
    from_file = convert_dac_checkpoint(checkpoint)
    assert from_file.config == converted.config
    assert dac_state_dict(checkpoint).keys() == dac_state_dict(checkpoint["state_dict"]).keys()
    for (key, a), (_, b) in zip(sorted(converted.state_dict().items()), sorted(from_file.state_dict().items())):
        assert torch.equal(a, b), key


def test_dac_configs_that_cannot_convert():
    with pytest.raises(ValueError, match="reversed encoder_rates"):
        dac_config_from_kwargs({"encoder_rates": [2, 4, 8, 8], "decoder_rates": [8, 4, 8, 2]})
    with pytest.raises(ValueError, match="divisible"):
        dac_config_from_kwargs({"decoder_dim": 1000})
    with pytest.raises(ValueError, match="one codebook_dim"):
        dac_config_from_kwargs({"n_codebooks": 2, "codebook_dim": [8, 4]})
    with pytest.raises(ValueError, match="unexpected key"):
        dac_state_dict({"encoder.block.0.weight": torch.zeros(1)})
    assert dac_config_from_kwargs({}).seanet.decoder_n_filters == 96  # DAC's defaults: the 44.1 kHz model


def test_seanet_config_new_fields_are_backwards_compatible():
    """Configs written before the DAC fields existed load with the old behaviour."""
    old = {k: v for k, v in config_to_dict(SEANetConfig()).items()
           if k not in ("decoder_n_filters", "decoder_last_kernel_size", "final_activation", "convtr_trim")}
    config = config_from_dict(SEANetConfig, old)
    assert config == SEANetConfig()
    assert (config.decoder_n_filters, config.decoder_last_kernel_size, config.final_activation,
            config.convtr_trim, config.decoder_output_deficit) == (None, None, "none", "balanced", 0)
    with pytest.raises(ValueError, match="non-causal"):
        SEANetConfig(convtr_trim="symmetric", causal=True)


@torch.no_grad()
def test_wider_decoder_with_tanh_still_streams(speech):
    """The DAC fields work in causal models too: a decoder of its own width and last kernel,
    ending in tanh, streams exactly like offline decoding."""
    torch.manual_seed(0)
    seanet = SEANetConfig(ratios=(5, 4, 2), n_filters=4, dimension=16, lstm_layers=0, activation="snake",
                          decoder_n_filters=6, decoder_last_kernel_size=5, final_activation="tanh")
    codec = AudioCodec(AudioCodecConfig(16000, seanet, QuantizerConfig(kind="factorized", n_q=2,
                                                                       codebook_size=32))).eval()
    assert codec.decoder.model[0].conv.out_channels == 6 * 8 and codec.encoder.model[0].conv.out_channels == 4
    assert codec.decoder.model[-2].conv.kernel_size == (5,) and isinstance(codec.decoder.model[-1], torch.nn.Tanh)
    codes = codec.encode(torch.from_numpy(speech[0][None, None, 4000:6000]))
    offline = codec.decode(codes)
    with codec.streaming(1):
        streamed = torch.cat([codec.decode_step(c) for c in torch.split(codes, 7, dim=-1)], dim=-1)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)
    assert offline.abs().max() < 1
