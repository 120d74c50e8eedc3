"""PSNR, SSIM and MS-SSIM against their formulas and scikit-image (reference only), and video averaging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity

from codec.eval.image_metrics import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_scales, per_frame, psnr, ssim


def skimage_ssim(x: np.ndarray, y: np.ndarray, k1: float = 0.01) -> float:
    """scikit-image's Gaussian SSIM of [C, H, W] images with range 1, channels averaged."""
    return float(structural_similarity(x, y, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0, K1=k1))


def camera(top: int, left: int, size: int) -> torch.Tensor:
    """A grey crop of scikit-image's camera photo: [1, 1, size, size] in [0, 1]."""
    image = torch.from_numpy(data.camera().astype(np.float32) / 255)
    return image[top:top + size, left:left + size][None, None].contiguous()


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_identical_images_score_perfectly():
    for shape in [(2, 3, 200, 180), (1, 1, 30, 40), (1, 3, 7, 9)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
        torch.testing.assert_close(ssim(x, x), torch.ones(shape[0]))
        torch.testing.assert_close(ms_ssim(x, x), torch.ones(shape[0]))


def test_psnr_matches_its_formula():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(3, 3, 16, 24, generator=g), torch.rand(3, 3, 16, 24, generator=g)
    expected = [10 * math.log10(1 / float(((a - b) ** 2).mean())) for a, b in zip(x, y)]
    torch.testing.assert_close(psnr(x, y), torch.tensor(expected), rtol=0, atol=1e-4)
    torch.testing.assert_close(psnr(255 * x, 255 * y, data_range=255.0), psnr(x, y))
    # a uniform error of 0.1 is 20 dB
    assert psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).item() == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize("shape", [(3, 3, 48, 64), (2, 1, 11, 11), (1, 3, 23, 57)])
def test_ssim_matches_skimage_on_random_images(shape):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g)
    y = (0.7 * x + 0.3 * torch.rand(shape, generator=g)).clamp(0, 1)
    expected = [skimage_ssim(a.numpy(), b.numpy()) for a, b in zip(x, y)]
    torch.testing.assert_close(ssim(x, y), torch.tensor(expected), rtol=0, atol=1e-3)


def test_ssim_matches_skimage_on_natural_images():
    x = torch.cat([camera(0, 0, 96), camera(200, 150, 96), camera(350, 300, 96)])
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    for y in (noisy(x, 0.05), blurred, (x * 0.8 + 0.1), torch.round(x * 8) / 8):
        expected = [skimage_ssim(a.numpy(), b.numpy()) for a, b in zip(x, y)]
        torch.testing.assert_close(ssim(x, y), torch.tensor(expected), rtol=0, atol=1e-3)


def test_small_images_use_a_window_as_large_as_the_image():
    """On a 7 x 9 image the window is the 7 x 7 Gaussian (sigma 1.5, renormalised): 3 positions."""
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(1, 1, 7, 9, generator=g), torch.rand(1, 1, 7, 9, generator=g)
    t = np.arange(7) - 3.0
    w1 = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    w = np.outer(w1, w1) / np.outer(w1, w1).sum()
    scores = []
    for left in range(3):
        a, b = x[0, 0, :, left:left + 7].double().numpy(), y[0, 0, :, left:left + 7].double().numpy()
        mu_a, mu_b = (w * a).sum(), (w * b).sum()
        var_a, var_b = (w * a * a).sum() - mu_a ** 2, (w * b * b).sum() - mu_b ** 2
        cov = (w * a * b).sum() - mu_a * mu_b
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        scores.append((2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert ssim(x, y).item() == pytest.approx(float(np.mean(scores)), abs=1e-5)


def test_ms_ssim_scales_fit_the_window():
    assert ms_ssim_scales(176, 300) == 5 and ms_ssim_scales(175, 300) == 4
    assert ms_ssim_scales(22, 22) == 2 and ms_ssim_scales(21, 64) == 1 and ms_ssim_scales(5, 5) == 1
    x = camera(100, 100, 20)
    y = noisy(x, 0.1)
    torch.testing.assert_close(ms_ssim(x, y), ssim(x, y))  # one scale: MS-SSIM is SSIM


def pool(x: np.ndarray) -> np.ndarray:
    """2 x 2 mean, odd last row/column dropped: [C, H, W] -> [C, H // 2, W // 2]."""
    c, h, w = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


@pytest.mark.parametrize("size, scales", [(200, 5), (90, 4)])
def test_ms_ssim_matches_a_reference_built_from_skimage(size, scales):
    """The contrast-structure term is skimage's SSIM with a huge K1 (luminance term -> 1)."""
    x = torch.cat([camera(50, 60, size), camera(250, 200, size)])
    y = noisy(x, 0.08)
    weights = np.array(MS_SSIM_WEIGHTS[:scales]) / sum(MS_SSIM_WEIGHTS[:scales])
    expected = []
    for a, b in zip(x.double().numpy(), y.double().numpy()):
        terms = []
        for j in range(scales):
            if j:
                a, b = pool(a), pool(b)
            terms.append(skimage_ssim(a, b) if j == scales - 1 else skimage_ssim(a, b, k1=1e4))
        expected.append(float(np.prod(np.maximum(terms, 0) ** weights)))
    torch.testing.assert_close(ms_ssim(x, y), torch.tensor(expected, dtype=torch.float32), rtol=0, atol=1e-3)


def test_more_noise_scores_lower():
    x = torch.cat([camera(0, 0, 180), camera(300, 300, 180)])
    for metric in (psnr, ssim, ms_ssim):
        scores = torch.stack([metric(x, noisy(x, sigma, seed=5)) for sigma in (0.01, 0.03, 0.1, 0.3)])
        assert (scores[1:] < scores[:-1]).all(), (metric.__name__, scores)


def test_negative_structure_is_clamped_not_nan():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    inverted = ms_ssim(x, 1 - x)
    assert ssim(x, 1 - x).item() < 0
    assert torch.isfinite(inverted).all() and inverted.item() == 0.0


def test_batch_items_are_scored_independently():
    g = torch.Generator().manual_seed(7)
    x, y = torch.rand(3, 3, 40, 40, generator=g), torch.rand(3, 3, 40, 40, generator=g)
    for metric in (psnr, ssim, ms_ssim):
        alone = torch.cat([metric(x[i:i + 1], y[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(metric(x, y), alone)


def test_per_frame_averages_frame_scores():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 3, 4, 24, 32, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for metric in (psnr, ssim, ms_ssim):
        frames = torch.stack([metric(x[:, :, t], y[:, :, t]) for t in range(4)], dim=1)  # [B, T]
        torch.testing.assert_close(per_frame(metric, x, y), frames.mean(dim=1))


def test_bad_shapes_and_types_are_clear_value_errors():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ssim(x[0], x[0])
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(x, torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="float images"):
        ms_ssim((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="data_range must be positive"):
        psnr(x, x, data_range=0)
    with pytest.raises(ValueError, match="empty"):
        ssim(torch.rand(1, 3, 0, 8), torch.rand(1, 3, 0, 8))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        per_frame(psnr, x, x)
    with pytest.raises(ValueError, match="videos differ in shape"):
        per_frame(ssim, torch.rand(1, 3, 2, 8, 8), torch.rand(1, 3, 3, 8, 8))
