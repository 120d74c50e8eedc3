import math

import pytest

from codec.tokens import TokenSpec


@pytest.mark.parametrize("n_q, kbps", [(2, 1.5), (4, 3.0), (8, 6.0), (16, 12.0), (32, 24.0)])
def test_encodec_24khz_bitrates(n_q, kbps):
    spec = TokenSpec("audio", (1024,) * n_q, frame_rate=24000 / 320)
    assert spec.frame_rate == 75
    assert spec.kbps == pytest.approx(kbps)
    assert spec.tokens_per_second == 75 * n_q


def test_dac_44khz_is_7_75_kbps():
    spec = TokenSpec("audio", (1024,) * 9, frame_rate=44100 / 512)
    assert spec.bits_per_second == pytest.approx(7751.95, abs=0.01)
    assert round(spec.kbps, 2) == 7.75


def test_mimi_is_1_1_kbps():
    spec = TokenSpec("audio", (2048,) * 8, frame_rate=12.5, latent_dim=512)
    assert spec.bits_per_second == pytest.approx(1100.0)
    assert spec.tokens_per_second == 100


def test_fsq_level_set_bits():
    # FSQ [8, 5, 5, 5] is one codebook of 1000 implicit codes: log2(1000) bits per token.
    spec = TokenSpec("audio", (8 * 5 * 5 * 5,), frame_rate=50)
    assert spec.bits_per_frame == pytest.approx(math.log2(1000))
    assert spec.bits_per_second == pytest.approx(50 * 9.9658, abs=1e-3)


def test_image_grid_counts_bits_per_item():
    spec = TokenSpec("image", (1024,), grid=(16, 16))
    assert spec.tokens_per_frame == 256
    assert spec.bits_per_frame == 2560
    assert spec.bits_per_second is None and spec.tokens_per_second is None


def test_video_rate_times_grid():
    spec = TokenSpec("video", (4096, 4096), frame_rate=8, grid=(8, 8))
    assert spec.tokens_per_second == 8 * 64 * 2
    assert spec.bits_per_second == 8 * 64 * 24


def test_with_num_codebooks_keeps_the_first_levels():
    spec = TokenSpec("audio", (1024, 512, 256), frame_rate=50)
    assert spec.with_num_codebooks(2).codebook_sizes == (1024, 512)
    assert spec.with_num_codebooks(2).bits_per_second == 50 * 19
    with pytest.raises(ValueError, match="1..3"):
        spec.with_num_codebooks(4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(modality="audio", codebook_sizes=(1024,)), "frame_rate"),
    (dict(modality="audio", codebook_sizes=(1,), frame_rate=50), ">= 2"),
    (dict(modality="image", codebook_sizes=(1024,)), "grid"),
    (dict(modality="image", codebook_sizes=(1024,), grid=(4, 4), frame_rate=2), "no frame_rate"),
])
def test_invalid_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenSpec(**kwargs)
