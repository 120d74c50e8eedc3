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
    (dict(modality="audio", codebook_sizes=(1024,), frame_rate=50, grid=(2,)), "no grid"),
    (dict(modality="audio", codebook_sizes=(1024,), frame_rate=50, latent_dim=0), "latent_dim"),
])
def test_invalid_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenSpec(**kwargs)


def test_stored_bits_round_up_information_bits():
    spec = TokenSpec("audio", (1000, 1024, 3), frame_rate=50)
    assert spec.stored_bits == (10, 10, 2)
    assert spec.information_bits == pytest.approx((math.log2(1000), 10.0, math.log2(3)))
    assert spec.stored_bits_per_second == 50 * 22
    assert spec.bits_per_second == pytest.approx(50 * (math.log2(1000) + 10 + math.log2(3)))
    assert spec.stored_bits_per_second > spec.bits_per_second


def test_counts_for_a_given_length():
    audio = TokenSpec("audio", (1024,) * 4, frame_rate=50)
    assert audio.num_frames(1.0) == 50 and audio.num_frames(1.001) == 51 and audio.num_frames(0.0) == 1
    assert audio.num_tokens(50) == 200 and audio.num_bits(50) == 2000
    video = TokenSpec("video", (1000,), frame_rate=4, grid=(2, 3))
    assert video.num_tokens(8) == 48 and video.num_bits(8, stored=True) == 480
    assert video.num_bits(8) == pytest.approx(48 * math.log2(1000))
    image = TokenSpec("image", (16, 16), grid=(4, 4), residual=False)
    assert image.num_tokens() == 32 and image.num_bits() == 128
    with pytest.raises(ValueError, match="no frames per second"):
        image.num_frames(1.0)


def test_bandwidths_and_levels_for_a_bitrate():
    spec = TokenSpec("audio", (1024,) * 12, frame_rate=50)
    assert spec.bandwidths() == pytest.approx([0.5 * n for n in range(1, 13)])
    assert spec.n_q_for_kbps(1.5) == 3 and spec.n_q_for_kbps(2.2) == 4 and spec.n_q_for_kbps(6) == 12
    with pytest.raises(ValueError, match="above the highest bitrate, 6 kbps"):
        spec.n_q_for_kbps(100)
    for bad in (0.3, -1.0):
        with pytest.raises(ValueError, match="below the lowest bitrate, 0.5 kbps"):
            spec.n_q_for_kbps(bad)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            spec.n_q_for_kbps(bad)


def test_parallel_levels_cannot_be_truncated():
    spec = TokenSpec("image", (8, 8, 8), grid=(2, 2), residual=False)
    with pytest.raises(ValueError, match="no bitrate per second"):
        spec.bandwidths()
    assert TokenSpec("video", (8, 8), frame_rate=2, grid=(1, 1), residual=False).bandwidths() == [0.012]
    assert spec.with_num_codebooks(3) == spec
    with pytest.raises(ValueError, match="parallel"):
        spec.with_num_codebooks(2)


def test_fsq_levels_must_match_the_codebook():
    spec = TokenSpec("audio", (1000,), frame_rate=50, fsq_levels=(8, 5, 5, 5), residual=False)
    assert spec.fsq_levels == (8, 5, 5, 5) and spec.n_q == 1
    with pytest.raises(ValueError, match="give 1000 codes"):
        TokenSpec("audio", (1024,), frame_rate=50, fsq_levels=(8, 5, 5, 5))


def test_multiscale_specs_record_their_scales():
    spec = TokenSpec("image", (256,), grid=(1, 85), scales=(1, 2, 4, 8), residual=False)
    assert spec.scales == (1, 2, 4, 8) and spec.tokens_per_frame == 85 and spec.bits_per_frame == 85 * 8
    with pytest.raises(ValueError, match="need the grid"):
        TokenSpec("image", (256,), grid=(8, 8), scales=(1, 2, 4, 8))
