"""Streaming equals offline; every input length comes back with its own length."""

import random

import pytest
import torch

from codec.audio import AudioCodec, AudioCodecConfig, SEANetConfig, streaming
from codec.audio.conv import StreamableConv1d, StreamableConvTranspose1d, StreamableLSTM
from codec.audio.presets import tiny
from codec.quantization import QuantizerConfig


def random_chunks(total: int, rng: random.Random, largest: int) -> list[int]:
    sizes = []
    while total > 0:
        sizes.append(min(total, rng.randint(1, largest)))
        total -= sizes[-1]
    return sizes


def stream(module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    outs, start = [], 0
    with streaming(module, x.shape[0]):
        for n in sizes:
            outs.append(module(x[..., start : start + n]))
            start += n
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("kernel, stride, dilation", [(7, 1, 1), (3, 1, 4), (4, 2, 1), (16, 8, 1), (5, 5, 1)])
def test_causal_conv_streams_like_offline(kernel, stride, dilation):
    torch.manual_seed(0)
    conv = StreamableConv1d(3, 5, kernel, stride, dilation, causal=True, norm="weight_norm")
    x = torch.randn(2, 3, 40 * stride)
    offline = conv(x)
    assert offline.shape[-1] == 40
    for seed in range(5):
        sizes = random_chunks(x.shape[-1], random.Random(seed), 3 * kernel)
        torch.testing.assert_close(stream(conv, x, sizes), offline, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel, stride", [(4, 2), (16, 8), (10, 5), (3, 3)])
def test_causal_transposed_conv_streams_like_offline(kernel, stride):
    torch.manual_seed(0)
    convtr = StreamableConvTranspose1d(4, 3, kernel, stride, causal=True, norm="weight_norm")
    x = torch.randn(2, 4, 30)
    offline = convtr(x)
    assert offline.shape[-1] == 30 * stride
    for seed in range(5):
        sizes = random_chunks(30, random.Random(seed), 7)
        torch.testing.assert_close(stream(convtr, x, sizes), offline, atol=1e-5, rtol=0)


def test_lstm_streams_like_offline():
    torch.manual_seed(0)
    lstm = StreamableLSTM(6, num_layers=2)
    x = torch.randn(3, 6, 50)
    torch.testing.assert_close(stream(lstm, x, [1, 10, 0, 39]), lstm(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length", [1, 2, 7, 15, 16, 17, 99, 1000])
def test_conv_output_covers_every_input_sample(causal, length):
    conv = StreamableConv1d(1, 1, 8, stride=4, causal=causal, pad_mode="constant" if causal else "reflect")
    assert conv(torch.randn(1, 1, length)).shape[-1] == -(-length // 4)


def test_causal_conv_output_depends_only_on_the_past():
    torch.manual_seed(0)
    conv = StreamableConv1d(1, 2, 7, stride=2, dilation=1, causal=True)
    x = torch.randn(1, 1, 64)
    y = x.clone()
    y[..., 40:] = torch.randn(1, 1, 24)
    # frame j depends on input up to sample 2j + 1: frames 0..19 see only x[:40]
    torch.testing.assert_close(conv(x)[..., :20], conv(y)[..., :20])
    assert not torch.allclose(conv(x)[..., 20:], conv(y)[..., 20:])


def small_codec(causal: bool = True, activation: str = "elu", kind: str = "ema") -> AudioCodec:
    torch.manual_seed(0)
    config = AudioCodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig(ratios=(5, 4, 2), n_filters=4, dimension=16, n_residual_layers=2, lstm_layers=1,
                            activation=activation, causal=causal, pad_mode="constant" if causal else "reflect"),
        quantizer=QuantizerConfig(kind=kind, n_q=3, codebook_size=32, kmeans_iters=2),
    )
    return AudioCodec(config).eval()


@pytest.mark.parametrize("activation, kind", [("elu", "ema"), ("snake", "factorized")])
def test_codec_streams_like_offline(speech, activation, kind):
    codec = small_codec(activation=activation, kind=kind)
    x = torch.from_numpy(speech[0][None, None, 4000:4000 + 2013])  # not a whole number of frames
    with torch.no_grad():
        offline_latent = codec.encode_latent(x)
        offline_codes = codec.encode(x)
        offline_audio = codec.decode(offline_codes)
        for seed in range(4):
            rng = random.Random(seed)
            with codec.streaming(1):
                codes, start = [], 0
                for n in random_chunks(x.shape[-1], rng, 300):
                    codes.append(codec.encode_step(x[..., start : start + n]))
                    start += n
                codes.append(codec.encode_flush())
            codes = torch.cat(codes, dim=-1)
            assert torch.equal(codes, offline_codes)
            with codec.streaming(1):
                audio, start = [], 0
                for n in random_chunks(codes.shape[-1], rng, 9):
                    audio.append(codec.decode_step(codes[..., start : start + n]))
                    start += n
            torch.testing.assert_close(torch.cat(audio, dim=-1), offline_audio, atol=1e-5, rtol=0)
        with streaming(codec.encoder, 1):  # the encoder alone streams latents equal to offline ones
            latent = torch.cat([codec.encoder(c) for c in torch.split(codec._pad_to_frames(x), 77, dim=-1)], -1)
        torch.testing.assert_close(latent, offline_latent, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_codec_output_length_equals_input_length(causal):
    codec = small_codec(causal=causal)
    lengths = list(range(1, 45)) + [159, 160, 161, 1234]
    with torch.no_grad():
        for length in lengths:
            x = torch.randn(2, 1, length)
            out = codec(x).audio
            assert out.shape == x.shape, length
            assert codec.encode(x).shape[-1] == -(-length // codec.hop_length)


def test_non_causal_codec_refuses_to_stream():
    codec = small_codec(causal=False)
    with pytest.raises(ValueError, match="causal"):
        with codec.streaming(1):
            pytest.fail("a non-causal codec entered streaming mode")
    assert not codec.encoder.model[0].is_streaming


def test_step_outside_streaming_is_an_error():
    codec = AudioCodec(tiny())
    with pytest.raises(RuntimeError, match="streaming"):
        codec.encode_step(torch.zeros(1, 1, 16))


def test_file_coding_does_not_depend_on_the_chunk_size(speech):
    """Long files are coded chunk by chunk (bounded memory); any chunk size gives the same result."""
    from codec.audio.compress import decode_audio, encode_audio
    from codec.audio.io import Audio

    codec = small_codec()
    audio = Audio(torch.from_numpy(speech[0][None, :20011]), 16000)
    encoded = encode_audio(codec, audio, 3, chunk_seconds=10.0)
    reference = decode_audio(codec, encoded, chunk_seconds=10.0).samples
    for seconds in (0.013, 0.1, 0.37):
        assert torch.equal(encode_audio(codec, audio, 3, chunk_seconds=seconds).codes, encoded.codes)
        decoded = decode_audio(codec, encoded, chunk_seconds=seconds).samples
        torch.testing.assert_close(decoded, reference, atol=1e-5, rtol=0)
