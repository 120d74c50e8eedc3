"""The causal iSTFT decoder: overlap-add alignment, causality, streaming and file coding."""

from __future__ import annotations

import pytest
import torch

from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio
from codec.audio.istft_decoder import ISTFTDecoder, ISTFTDecoderConfig
from codec.audio.model import AudioCodec, AudioCodecConfig
from codec.audio.seanet import SEANetConfig
from codec.checkpoint import model_fingerprint

HOP = 8
TINY_DECODER = ISTFTDecoderConfig(dim=16, intermediate_dim=24, n_layers=2, kernel_size=3)
SUBFRAMES_DECODER = ISTFTDecoderConfig(dim=16, intermediate_dim=24, n_layers=2, kernel_size=3, subframes=4)


def tiny_codec(seed: int = 0, decoder: ISTFTDecoderConfig = TINY_DECODER) -> AudioCodec:
    torch.manual_seed(seed)
    config = AudioCodecConfig(seanet=SEANetConfig(n_filters=4, dimension=8, ratios=(4, 2), lstm_layers=1),
                              decoder=decoder)
    return AudioCodec(config).eval()


def test_overlap_add_rebuilds_the_signal_whose_frames_it_is_given(monkeypatch):
    """Frame t covers x[(t - 1) hop : (t + 1) hop]; analysed and synthesised with sqrt-Hann windows
    (what ``frames`` returns), the halves overlap-add to x itself, except the last hop, which only
    the last frame's falling half covers."""
    decoder = ISTFTDecoder(4, HOP, TINY_DECODER)
    x = torch.randn(2, 6 * HOP)
    padded = torch.nn.functional.pad(x, (HOP, 0))  # frame 0 starts one hop before the signal
    frames = padded.unfold(-1, 2 * HOP, HOP)[:, :6] * decoder.window**2  # [B, F, 2 hop]
    monkeypatch.setattr(decoder, "frames", lambda z: frames)
    y = decoder(torch.zeros(2, 4, 6))[:, 0]
    torch.testing.assert_close(y[:, : 5 * HOP], x[:, : 5 * HOP], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 5 * HOP :], x[:, 5 * HOP :] * decoder.window[HOP:] ** 2, atol=1e-5, rtol=0)


def test_decoder_is_causal_with_one_hop_of_delay():
    """Output hop t uses frames t and t + 1 only: changing frames from k on leaves [0, (k - 1) hop)."""
    decoder = ISTFTDecoder(4, HOP, TINY_DECODER).eval()
    z = torch.randn(1, 4, 10)
    changed = z.clone()
    changed[..., 6:] = torch.randn(1, 4, 4)
    with torch.no_grad():
        a, b = decoder(z), decoder(changed)
    assert torch.equal(a[..., : 5 * HOP], b[..., : 5 * HOP])
    assert not torch.allclose(a[..., 5 * HOP : 6 * HOP], b[..., 5 * HOP : 6 * HOP])


@pytest.mark.parametrize("decoder", [TINY_DECODER, SUBFRAMES_DECODER], ids=["1 subframe", "4 subframes"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streamed_decoding_with_flush_equals_offline(chunk, decoder):
    codec = tiny_codec(decoder=decoder)
    x = torch.randn(2, 1, 8 * 23 + 5)
    with torch.no_grad():
        codes = codec.encode(x)
        offline = codec.decode(codes)
        with codec.streaming(2):
            pieces = [codec.decode_step(codes[..., i : i + chunk]) for i in range(0, codes.shape[-1], chunk)]
            first = pieces[0].shape[-1]
            pieces.append(codec.decode_flush())
            assert codec.decode_flush().shape == (2, 1, 0)  # nothing is pending twice
    assert first == chunk * HOP - HOP // decoder.subframes  # the last sub-frame hop waits for the next frame
    torch.testing.assert_close(torch.cat(pieces, -1), offline, atol=1e-6, rtol=0)


def test_file_coding_of_an_istft_codec_keeps_the_length_and_equals_offline_decoding():
    codec = tiny_codec()
    audio = Audio(samples=torch.randn(1, 8 * 40 + 3) * 0.1, sample_rate=16000)
    encoded = encode_audio(codec, audio)
    decoded = decode_audio(codec, encoded, chunk_seconds=0.004)  # 8 frames per streamed chunk
    assert decoded.samples.shape == audio.samples.shape
    with torch.no_grad():
        offline = codec.decode(encoded.codes, audio.samples.shape[-1])[0]
    torch.testing.assert_close(decoded.samples, offline, atol=1e-6, rtol=0)


def test_the_decoder_config_is_part_of_the_fingerprint_and_mono_only():
    base = tiny_codec(seed=1)
    other = tiny_codec(seed=1, decoder=ISTFTDecoderConfig(dim=16, intermediate_dim=24, n_layers=2, kernel_size=3,
                                                          layer_scale=0.5))
    other.load_state_dict(base.state_dict())
    assert model_fingerprint(base) != model_fingerprint(other)
    with pytest.raises(ValueError, match="mono"):
        AudioCodecConfig(seanet=SEANetConfig(channels=2), decoder=TINY_DECODER)
    with pytest.raises(ValueError, match="decoder.n_layers must be positive"):
        ISTFTDecoderConfig(n_layers=0)


def test_subframes_overlap_add_at_a_finer_hop_and_stay_causal(monkeypatch):
    """With K sub-frames per latent frame, sub-frame m covers x[(m - 1) s : (m + 1) s], s = hop / K, and
    latent frame t's sub-frames end by (t + 1) hop: output up to (t + 1) hop - s needs frames <= t only."""
    decoder = ISTFTDecoder(4, HOP, SUBFRAMES_DECODER)
    s = HOP // 4
    assert (decoder.hop, decoder.n_fft, decoder.head.out_features) == (s, 2 * s, 4 * 2 * (s + 1))
    x = torch.randn(2, 6 * HOP)
    frames = torch.nn.functional.pad(x, (s, 0)).unfold(-1, 2 * s, s)[:, :24] * decoder.window**2  # [B, 6 K, 2 s]
    with monkeypatch.context() as patched:
        patched.setattr(decoder, "frames", lambda z: frames)
        y = decoder(torch.zeros(2, 4, 6))[:, 0]
    torch.testing.assert_close(y[:, : 6 * HOP - s], x[:, : 6 * HOP - s], atol=1e-5, rtol=0)
    decoder.eval()
    z = torch.randn(1, 4, 10)
    changed = z.clone()
    changed[..., 6:] = torch.randn(1, 4, 4)
    with torch.no_grad():
        a, b = decoder(z), decoder(changed)
    assert torch.equal(a[..., : 6 * HOP - s], b[..., : 6 * HOP - s])
    assert not torch.allclose(a[..., 6 * HOP - s : 6 * HOP], b[..., 6 * HOP - s : 6 * HOP])
    with pytest.raises(ValueError, match=r"decoder.subframes \(3\) must divide the hop length \(8\)"):
        ISTFTDecoder(4, HOP, ISTFTDecoderConfig(subframes=3))
    with pytest.raises(ValueError, match=r"decoder.subframes \(3\) must divide the hop length \(320\)"):
        AudioCodecConfig(decoder=ISTFTDecoderConfig(subframes=3))  # a config error, before any model is built


def test_models_saved_before_subframes_existed_keep_their_fingerprint():
    """A config key added later is left out of the fingerprint at its default, so .cdc files written with
    older models still find them; a model that uses sub-frames is a different model."""
    base = tiny_codec(seed=1)
    fingerprint = model_fingerprint(base)
    assert fingerprint == "f1343f6a3d547416"  # measured before the key was added
    assert model_fingerprint(tiny_codec(seed=1, decoder=SUBFRAMES_DECODER)) != fingerprint
