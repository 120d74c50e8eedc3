"""The causal video tokenizer: contract, token rate, causality, streaming, checkpoints, learning."""

from __future__ import annotations

import math

import pytest
import torch

from codec.checkpoint import load_checkpoint, save_pretrained
from codec.image.output import VisualOutput
from codec.quantization import QuantizerConfig
from codec.streaming import streaming
from codec.video.causal_conv import CausalConv3d, CausalUpsample3d
from codec.video.config import VideoTokenizerConfig
from codec.video.tokenizer import CausalVideoTokenizer
from tests.tokenizer_conformance import check_tokenizer


def tiny_config(kind: str = "ema", **overrides) -> VideoTokenizerConfig:
    quantizer = QuantizerConfig(kind=kind, n_q=2, codebook_size=32, fsq_levels=(5, 5, 5))
    return VideoTokenizerConfig(image_size=16, width=8, latent_dim=6, quantizer=quantizer, **overrides)


def tiny_model(kind: str = "ema", seed: int = 0, **overrides) -> CausalVideoTokenizer:
    """A random tiny model whose EMA codebooks are k-means-initialised on its own latents (diverse codes)."""
    torch.manual_seed(seed)
    model = CausalVideoTokenizer(tiny_config(kind, **overrides))
    with torch.no_grad():
        model(torch.rand(2, 1, 9, 16, 16))  # training mode: k-means on the first batch
    return model.eval()


def video(frames: int, seed: int = 1, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 1, frames, 16, 16, generator=torch.Generator().manual_seed(seed))


# --- contract and token rate -----------------------------------------------------------------

def quantizer_kinds() -> list[str]:
    """The quantizer kinds to test: lfq once codec.quantization has it."""
    try:
        QuantizerConfig(kind="lfq")
    except ValueError:
        return ["ema", "fsq"]
    return ["ema", "fsq", "lfq"]


@torch.no_grad()
@pytest.mark.parametrize("kind", quantizer_kinds())
def test_tokenizer_contract(kind):
    model = tiny_model(kind)
    x = video(9)
    check_tokenizer(model, x, seconds=9 / model.config.frame_rate)
    codes = model.encode(x)
    assert codes.shape == (2, model.token_spec.n_q, 3, 4, 4)
    assert len(codes.unique()) > 3  # the codes say something about the input
    y = model.decode(codes)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    out = model(x)
    assert isinstance(out, VisualOutput) and torch.equal(out.codes, codes)
    assert torch.allclose(out.reconstruction.clamp(0, 1), y, atol=1e-6)


def test_token_spec_numbers():
    config = VideoTokenizerConfig(frame_rate=8.0, temporal_downsample=4, spatial_downsample=4, image_size=32,
                                  quantizer=QuantizerConfig(kind="ema", n_q=2, codebook_size=256))
    spec = config.token_spec
    assert spec.modality == "video" and spec.grid == (8, 8) and spec.latent_dim == 16
    assert spec.frame_rate == 2.0 and spec.tokens_per_frame == 128
    assert spec.bits_per_second == 2 * 8 * 8 * 2 * 8 == 2048
    assert spec.residual and spec.bandwidths() == [1.024, 2.048]
    model = CausalVideoTokenizer(config)
    model.set_num_codebooks(1)
    assert model.token_spec.bits_per_second == 1024
    fsq = VideoTokenizerConfig(spatial_downsample=8, temporal_downsample=1,
                               quantizer=QuantizerConfig(kind="fsq", fsq_levels=(8, 5, 5, 5)))
    assert fsq.token_spec.grid == (4, 4) and fsq.token_spec.frame_rate == 8.0
    assert fsq.token_spec.fsq_levels == (8, 5, 5, 5) and not fsq.token_spec.residual
    assert fsq.token_spec.bits_per_second == pytest.approx(8 * 16 * math.log2(1000))
    assert [config.num_latent_frames(t) for t in (1, 5, 9)] == [1, 2, 3]
    assert [config.num_frames(t) for t in (1, 2, 3)] == [1, 5, 9]


@pytest.mark.parametrize("key, value, message", [
    ("spatial_downsample", 2, "spatial_downsample must be 4, 8 or 16"),
    ("temporal_downsample", 3, "temporal_downsample must be 1, 2 or 4"),
    ("image_size", 30, "image_size must be a positive multiple of spatial_downsample=4"),
    ("frame_rate", 0.0, "frame_rate must be > 0"),
    ("latent_dim", 0, "latent_dim must be >= 1"),
])
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        VideoTokenizerConfig(**{key: value})


def test_lengths_not_one_plus_a_multiple_of_the_stride_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"1 \+ k \* 4 frames \(1, 5, 9, 13, \.\.\.\), got 7 frames"):
        model.encode(video(7))
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode(torch.rand(1, 1, 5, 16, 18))
    with pytest.raises(ValueError, match="C=1"):
        model.encode(torch.rand(1, 3, 5, 16, 16))


def test_a_single_frame_is_one_latent_frame():
    model = tiny_model()
    x = video(1)
    codes = model.encode(x)
    assert codes.shape == (2, 2, 1, 4, 4)
    y = model.decode(codes)
    assert y.shape == x.shape
    # the first frame of a longer video is coded exactly as that frame alone
    longer = torch.cat([x, video(4, seed=5)], dim=2)
    assert torch.equal(model.encode(longer)[:, :, :1], codes)
    assert torch.allclose(model.decode(model.encode(longer))[:, :, :1], y, atol=1e-6)


# --- causality ----------------------------------------------------------------------------------

@torch.no_grad()
@pytest.mark.parametrize("frame", [1, 4, 5, 8, 12])
def test_changing_a_frame_changes_nothing_before_it(frame):
    model = tiny_model()
    x = video(13)
    changed = x.clone()
    changed[:, :, frame] = 1 - changed[:, :, frame]
    first_affected = -(-frame // 4)  # latent frame i holds frames (i - 1) * 4 + 1 ... i * 4
    latent, latent_changed = model.encode_latent(x), model.encode_latent(changed)
    assert torch.equal(latent[:, :, :first_affected], latent_changed[:, :, :first_affected])
    assert not torch.allclose(latent[:, :, first_affected], latent_changed[:, :, first_affected])
    codes, codes_changed = model.encode(x), model.encode(changed)
    assert torch.equal(codes[:, :, :first_affected], codes_changed[:, :, :first_affected])
    # frames decoded from the unaffected latent frames are unchanged
    kept = 1 + (first_affected - 1) * 4
    y, y_changed = model.decode_latent(latent), model.decode_latent(latent_changed)
    assert torch.equal(y[:, :, :kept], y_changed[:, :, :kept])
    assert not torch.allclose(y[:, :, kept:], y_changed[:, :, kept:])


# --- streaming ----------------------------------------------------------------------------------

def chunk_sizes(total: int, seed: int) -> list[int]:
    """Random chunk sizes 0..4 summing to ``total``."""
    generator, sizes = torch.Generator().manual_seed(seed), []
    while sum(sizes) < total:
        sizes.append(min(int(torch.randint(0, 5, (1,), generator=generator)), total - sum(sizes)))
    return sizes


@torch.no_grad()
@pytest.mark.parametrize("seed", [None, 0, 1])  # None: frame by frame
def test_streaming_equals_offline(seed):
    model = tiny_model()
    x = video(13)
    codes, y = model.encode(x), model.decode(model.encode(x))
    sizes = [1] * 13 if seed is None else chunk_sizes(13, seed)
    with model.streaming(2):
        pieces, start = [], 0
        for size in sizes:
            pieces.append(model.encode_step(x[:, :, start:start + size]))
            start += size
    if seed is None:  # latent frame 0 with frame 0, then one with every 4th frame
        assert [p.shape[2] for p in pieces] == [1, 0, 0, 0] * 3 + [1]
    assert torch.equal(torch.cat(pieces, dim=2), codes)
    latent_sizes = [1] * 4 if seed is None else chunk_sizes(4, seed)
    with model.streaming(2):
        frames, start = [], 0
        for size in latent_sizes:
            frames.append(model.decode_step(codes[:, :, start:start + size]))
            start += size
    assert torch.allclose(torch.cat(frames, dim=2), y, atol=1e-5)


@torch.no_grad()
def test_streaming_an_unfinished_group_gives_the_completed_latent_frames():
    model = tiny_model()
    x = video(11)  # latent frames 0, 1, 2 are complete; frames 9 and 10 wait for frames 11 and 12
    with model.streaming(2):
        codes = torch.cat([model.encode_step(x[:, :, t:t + 1]) for t in range(11)], dim=2)
    assert torch.equal(codes, model.encode(x[:, :, :9]))


def test_steps_outside_streaming_are_an_error():
    model = tiny_model()
    with pytest.raises(RuntimeError, match="streaming"):
        model.encode_step(video(1))


@torch.no_grad()
@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), ((4, 3, 3), (4, 2, 2)), ((2, 5, 3), (1, 1, 2))])
def test_causal_conv3d_streams_like_offline(kernel, stride):
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, kernel, stride)
    x = torch.randn(2, 3, 17, 8, 10)
    offline = conv(x)
    temporal_stride = stride if isinstance(stride, int) else stride[0]
    assert offline.shape[2] == 1 + 16 // temporal_stride
    for seed in (0, 1):
        with streaming(conv, 2):
            pieces, start = [], 0
            for size in chunk_sizes(17, seed):
                pieces.append(conv(x[:, :, start:start + size]))
                start += size
        assert torch.allclose(torch.cat(pieces, dim=2), offline, atol=1e-5)


@torch.no_grad()
def test_causal_conv3d_pads_the_past_with_the_first_frame():
    torch.manual_seed(0)
    conv = CausalConv3d(2, 3, 3)
    still = torch.randn(1, 2, 1, 6, 6).expand(-1, -1, 5, -1, -1)
    y = conv(still)  # a still video looks still from its first frame on
    assert torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("temporal_factor, spatial_factor", [(2, 2), (4, 1), (1, 2)])
def test_causal_upsampling_streams_like_offline(temporal_factor, spatial_factor):
    torch.manual_seed(0)
    up = CausalUpsample3d(3, 2, temporal_factor, spatial_factor)
    x = torch.randn(2, 3, 6, 4, 4)
    offline = up(x)
    assert offline.shape == (2, 2, 1 + 5 * temporal_factor, 4 * spatial_factor, 4 * spatial_factor)
    with streaming(up, 2):
        pieces = [up(x[:, :, :0])] + [up(x[:, :, t:t + 1]) for t in range(6)]
    assert [p.shape[2] for p in pieces] == [0, 1] + [temporal_factor] * 5
    assert torch.allclose(torch.cat(pieces, dim=2), offline, atol=1e-5)


# --- checkpoints and learning ---------------------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    model = tiny_model()
    path = save_pretrained(model, tmp_path / "video")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, CausalVideoTokenizer) and loaded.config == model.config
    x = video(5)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
        assert torch.equal(loaded.decode(model.encode(x)), model.decode(model.encode(x)))


def moving_squares(count: int, frames: int = 5, size: int = 16, seed: int = 0) -> torch.Tensor:
    """[count, 1, frames, size, size]: one square of random side, grey level and velocity per video."""
    generator = torch.Generator().manual_seed(seed)
    videos = torch.zeros(count, 1, frames, size, size)
    for i in range(count):
        side = int(torch.randint(4, 7, (1,), generator=generator))
        y0, x0 = torch.randint(0, size - side + 1, (2,), generator=generator).tolist()
        vy, vx = torch.randint(-2, 3, (2,), generator=generator).tolist()
        level = 0.5 + 0.5 * float(torch.rand(1, generator=generator))
        for t in range(frames):
            y, x = min(max(y0 + vy * t, 0), size - side), min(max(x0 + vx * t, 0), size - side)
            videos[i, 0, t, y:y + side, x:x + side] = level
    return videos


def test_short_training_beats_the_mean_and_previous_frame_baselines():
    """Baselines see the original video: the mean-frame one predicts every frame by the video's mean
    image; the previous-frame one predicts frame t by frame t - 1 and frame 0 by the mean image."""
    x = moving_squares(8)
    mean = x.mean(dim=2, keepdim=True).expand_as(x)
    mean_mse = float(((x - mean) ** 2).mean())
    previous_mse = float(((x - torch.cat([mean[:, :, :1], x[:, :, :-1]], dim=2)) ** 2).mean())
    torch.manual_seed(0)
    model = CausalVideoTokenizer(VideoTokenizerConfig(
        image_size=16, width=16, latent_dim=8, quantizer=QuantizerConfig(kind="ema", n_q=2, codebook_size=64)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(120):
        out = model(x)
        loss = ((out.reconstruction - x) ** 2).mean() + out.quantizer.commitment_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        mse = float(((model.decode(model.encode(x)) - x) ** 2).mean())
    assert mse < 0.4 * min(mean_mse, previous_mse), (mse, mean_mse, previous_mse)
