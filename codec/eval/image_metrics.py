"""Full-reference image quality: PSNR, SSIM and MS-SSIM, per image; videos frame by frame.

Images are float tensors [B, C, H, W] in [0, 1] (``data_range`` sets another peak for PSNR);
every metric returns one score per image, [B], computed in float32 at least.

- PSNR is ``10 log10(data_range^2 / MSE)`` with the MSE over all of an image's pixels and
  channels; identical images give ``inf`` (no cap: a table decides how to show it).
- SSIM (Wang et al. 2004) uses an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  population (biased) local statistics, and the mean of the SSIM map over the positions where
  the window lies wholly inside the image ("valid"), averaged over channels. This equals
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` for images at least 11 pixels on each side.
  On smaller images the window shrinks to the shorter side (same sigma, renormalised), so a
  tiny image still gets a score instead of an error.
- MS-SSIM (Wang et al. 2003) multiplies the contrast-structure terms of the first M - 1
  scales and the full SSIM of the last, each raised to its weight, halving the image by 2 x 2
  averaging between scales (an odd last row/column is dropped). Negative terms are clamped to 0
  (as common implementations do) so that fractional powers stay real. The standard M = 5 needs
  a shorter side of at least 176 (the 11-pixel window fits at 1/16 size); smaller images use as
  many scales as fit (at least one) with the first M standard weights renormalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest first

ImageMetric = Callable[[Tensor, Tensor], Tensor]


def _check_images(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate a pair of [B, C, H, W] images; return them as floats of one dtype (>= float32)."""
    if x.dim() != 4 or y.dim() != 4:
        raise ValueError(f"Expected images [B, C, H, W]; got shapes {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.shape != y.shape:
        raise ValueError(f"The two images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}.")
    if x.numel() == 0:
        raise ValueError(f"The images are empty: shape {tuple(x.shape)}.")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"Expected float images in [0, 1]; got dtypes {x.dtype} and {y.dtype}.")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    return x.to(dtype), y.to(dtype)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB: x, y [B, C, H, W] -> [B]; inf where x == y."""
    if data_range <= 0:
        raise ValueError(f"data_range must be positive; got {data_range}.")
    x, y = _check_images(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    """A normalised 1-D Gaussian of ``size`` taps centred between them when size is even: [size]."""
    t = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' filtering of every channel: [N, C, H, W] -> [N, C, H - k + 1, W - k + 1]."""
    c, k = x.shape[1], len(window)
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_terms(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term per image: [B, C, H, W] x 2 -> ([B], [B])."""
    window = _gaussian_window(min(SSIM_WINDOW, *x.shape[-2:]), SSIM_SIGMA, x)
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # data range 1
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x ** 2
    var_y = _blur(y * y, window) - mu_y ** 2
    cov = _blur(x * y, window) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)  # contrast-structure map
    luminance = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    return (luminance * cs).flatten(1).mean(dim=1), cs.flatten(1).mean(dim=1)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Structural similarity of images in [0, 1]: x, y [B, C, H, W] -> [B] (1 where x == y)."""
    return _ssim_terms(*_check_images(x, y))[0]


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales an image of this size gets: 1..5 (the window fits at the coarsest)."""
    side = min(height, width)
    return max(1, sum(1 for j in range(len(MS_SSIM_WEIGHTS)) if side >> j >= SSIM_WINDOW))


def ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """Multi-scale SSIM of images in [0, 1]: x, y [B, C, H, W] -> [B] (1 where x == y)."""
    x, y = _check_images(x, y)
    scales = ms_ssim_scales(*x.shape[-2:])
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    terms = []
    for j in range(scales):
        if j > 0:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        full, cs = _ssim_terms(x, y)
        terms.append(full if j == scales - 1 else cs)
    return (torch.stack(terms, dim=1).clamp_min(0) ** weights).prod(dim=1)  # [B, M] -> [B]


def per_frame(metric: ImageMetric, x: Tensor, y: Tensor) -> Tensor:
    """A video score as the mean of an image metric over frames: x, y [B, C, T, H, W] -> [B].

    For PSNR this is the mean of per-frame dB (the usual video convention), inf if any frame
    is reconstructed exactly.
    """
    if x.dim() != 5 or y.dim() != 5:
        raise ValueError(f"Expected videos [B, C, T, H, W]; got shapes {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.shape != y.shape:
        raise ValueError(f"The two videos differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}.")
    b, c, t, h, w = x.shape

    def frames(v: Tensor) -> Tensor:  # [B, C, T, H, W] -> [B * T, C, H, W]
        return v.transpose(1, 2).reshape(b * t, c, h, w)

    return metric(frames(x), frames(y)).view(b, t).mean(dim=1)
