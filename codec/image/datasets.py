"""Image datasets for tokenizer training: every item is float32 [C, S, S] in [0, 1].

- ``digits_images``: scikit-learn's 1797 handwritten digits (8 x 8, 17 grey levels), upsampled;
  labels 0..9 kept for class-conditional generators.
- ``faces_images``: the 100 faces (25 x 25 grey) of scikit-image's LFW subset, upsampled
  (its other 100 patches are non-faces and are not used).
- ``SampleImageCrops``: random crops of scikit-image's bundled photographs and textures;
  which images train and which are held out is ``SAMPLE_IMAGES``.
- ``FolderImages``: every image file under a folder (recursively).
- ``image_dataset(name, split, ...)``: one entry point over all four.

Digits and faces are split by index: i % 10 in 0..7 trains, 8 validates, 9 tests (80/10/10,
every class in every split). Items are addressed like ``SegmentDataset``'s: ``index`` or
``(index, sample_seed)`` as ``StepBatchSampler`` yields them; random crops and flips are drawn
from (dataset seed, index, sample_seed) only, so an item is the same in every worker and run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from codec.errors import CodecError
from codec.files import files_under

from .io import IMAGE_SUFFIXES, read_image, to_image_channels

SPLITS = ("train", "valid", "test")
# skimage.data images that load offline ("cat" is "chelsea" again, so it is not listed).
SAMPLE_IMAGES = {
    "train": ("camera", "astronaut", "coffee", "rocket", "brick", "grass", "gravel", "page", "text", "cell",
              "hubble_deep_field", "immunohistochemistry", "retina"),
    "valid": ("coins", "clock", "colorwheel"),
    "test": ("chelsea", "moon", "microaneurysms"),
}
CROP_MODES = ("random", "center", "resize")
DATASET_NAMES = ("digits", "samples", "faces")

Item = int | tuple[int, int]


def split_indices(count: int, split: str) -> torch.Tensor:
    """[N'] int64: the indices of ``split`` among ``count`` items (i % 10: 0..7 train, 8 valid, 9 test)."""
    _check_split(split)
    remainders = {"train": range(8), "valid": (8,), "test": (9,)}[split]
    index = torch.arange(count)
    return index[torch.isin(index % 10, torch.tensor(remainders))]


def digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits of ``split``: images [N, 1, 8, 8] float32 in [0, 1] and labels [N] int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = split_indices(len(digits.target), split)
    images = torch.from_numpy(digits.images).float().div(16)[index, None]
    return images, torch.from_numpy(digits.target).long()[index]


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., h, w] -> [..., height, width], bilinear (antialiased when shrinking)."""
    if x.shape[-2:] == (height, width):
        return x
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]).float(), size=(height, width), mode="bilinear",
                      align_corners=False, antialias=True)
    return y.reshape(*lead, height, width).clamp(0, 1)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """[..., h, w] scaled (aspect kept) so that its shorter side is ``size``."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    return resize(x, max(size, round(h * scale)), max(size, round(w * scale)))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central [..., size, size] of [..., h, w] (h, w >= size)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A uniformly placed [..., size, size] of [..., h, w] (h, w >= size); always two draws."""
    h, w = x.shape[-2:]
    top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return x[..., top:top + size, left:left + size]


def item_rng(seed: int, item: Item) -> tuple[int, np.random.Generator]:
    """The index of ``item`` and its random generator, from (seed, index, sample_seed)."""
    index, sample_seed = item if isinstance(item, tuple) else (item, 0)
    return index, np.random.default_rng([seed, index, sample_seed])


class TensorImages(Dataset[torch.Tensor]):
    """A fixed set of small images [N, C, h, w] in [0, 1], each item resized to [C, size, size].

    ``labels``: [N] int64 class labels (None when there are none); ``num_classes``: 0 without labels.
    """

    def __init__(self, images: torch.Tensor, size: int, labels: torch.Tensor | None = None) -> None:
        _check_size(size)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, C, h, w] with C = 1 or 3, got {tuple(images.shape)}")
        if labels is not None and labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be [{len(images)}], got {tuple(labels.shape)}")
        self.images = images
        self.size = size
        self.labels = labels
        self.num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: Item) -> torch.Tensor:
        index = item[0] if isinstance(item, tuple) else item
        return resize(self.images[index], self.size, self.size)


def digits_images(split: str, size: int = 32, channels: int = 1) -> TensorImages:
    """scikit-learn's handwritten digits of ``split`` (1439 / 179 / 179 images), bilinearly
    upsampled from 8 x 8 to [channels, size, size], with their labels 0..9."""
    images, labels = digits_split(split)
    return TensorImages(to_image_channels(images.transpose(0, 1), channels).transpose(0, 1), size, labels)


def faces_images(split: str = "train", size: int = 32, channels: int = 1) -> TensorImages:
    """The 100 faces of scikit-image's LFW subset in ``split`` (80 / 10 / 10), bilinearly resized
    from 25 x 25 grey to [channels, size, size]; no labels."""
    from skimage.data import lfw_subset

    faces = torch.from_numpy(lfw_subset()[:100]).float()[:, None]  # [100, 1, 25, 25] in [0, 1]
    faces = faces[split_indices(len(faces), split)]
    return TensorImages(to_image_channels(faces.transpose(0, 1), channels).transpose(0, 1), size)


class SampleImageCrops(Dataset[torch.Tensor]):
    """``items`` random square crops [channels, size, size] of the skimage.data images ``names``.

    Item i comes from image i % len(names): a square of side drawn log-uniformly between ``size``
    and the image's shorter side (images shorter than ``size`` are first enlarged), placed
    uniformly, resized to ``size`` and flipped left-right with probability 1/2. Grey images are
    repeated to RGB, RGB images reduced to BT.601 luma, as ``channels`` asks.
    """

    def __init__(self, names: tuple[str, ...], size: int, channels: int = 3, items: int = 1000,
                 seed: int = 0) -> None:
        _check_size(size)
        _check_channels(channels)
        known = {name for split in SAMPLE_IMAGES.values() for name in split}
        unknown = [name for name in names if name not in known]
        if not names or unknown:
            raise ValueError(f"names must be skimage sample images among {sorted(known)}, got {list(names)}")
        if items < 1:
            raise ValueError(f"items must be >= 1, got {items}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.names = tuple(names)
        self.size, self.channels, self.items, self.seed = size, channels, items, seed
        self.images = [_sample_image(name, channels, size) for name in names]  # uint8 [C, H, W]

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, rng = item_rng(self.seed, item)
        image = self.images[index % len(self.images)]
        short = min(image.shape[-2:])
        side = round(math.exp(rng.uniform(math.log(self.size), math.log(short))))
        crop = random_crop(image, side, rng).float().div(255)
        crop = resize(crop, self.size, self.size)
        return crop.flip(-1) if rng.random() < 0.5 else crop


class FolderImages(Dataset[torch.Tensor]):
    """Every image file (``IMAGE_SUFFIXES``, any case) under ``folder``, recursively, in sorted
    order, as [channels, size, size] via ``read_image``.

    crop: "random" (shorter side resized to ``size``, a uniformly placed square, flipped
    left-right with probability 1/2), "center" (shorter side resized, the central square) or
    "resize" (the whole image squeezed to size x size).
    """

    def __init__(self, folder: str | os.PathLike, size: int, channels: int = 3, crop: str = "random",
                 seed: int = 0) -> None:
        _check_size(size)
        _check_channels(channels)
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        root = Path(folder)
        if not root.is_dir():
            raise CodecError(f"Image folder '{root}' does not exist or is not a folder.")
        self.files = files_under(root, IMAGE_SUFFIXES)
        if not self.files:
            raise CodecError(f"Image folder '{root}' holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        self.size, self.channels, self.crop, self.seed = size, channels, crop, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, rng = item_rng(self.seed, item)
        image = read_image(self.files[index], self.channels)
        if self.crop == "resize":
            return resize(image, self.size, self.size)
        image = resize_short_side(image, self.size)
        if self.crop == "center":
            return center_crop(image, self.size).contiguous()
        image = random_crop(image, self.size, rng)
        return (image.flip(-1) if rng.random() < 0.5 else image).contiguous()


def image_dataset(name: str, split: str = "train", size: int = 32, channels: int | None = None,
                  items: int = 1000, seed: int = 0) -> Dataset[torch.Tensor]:
    """The image dataset ``name``: "digits", "faces" (channels default 1), "samples" (``items``
    crops of ``SAMPLE_IMAGES[split]``; channels default 3) or the path of a folder of images
    (channels default 3; random crops for "train", center crops otherwise; the folder is used
    whole whatever the split)."""
    _check_split(split)
    if name == "digits":
        return digits_images(split, size, channels or 1)
    if name == "faces":
        return faces_images(split, size, channels or 1)
    if name == "samples":
        return SampleImageCrops(SAMPLE_IMAGES[split], size, channels or 3, items, seed)
    if Path(name).is_dir():
        return FolderImages(name, size, channels or 3, "random" if split == "train" else "center", seed)
    raise CodecError(f"Unknown image dataset '{name}': use digits, samples, faces or the path of a folder "
                     "of images.")


def _sample_image(name: str, channels: int, size: int) -> torch.Tensor:
    """skimage.data's ``name`` as uint8 [channels, H, W], enlarged if its shorter side is below ``size``."""
    import skimage.data

    array = getattr(skimage.data, name)()
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)[:3]
    x = to_image_channels(x.float().div(255), channels)
    if min(x.shape[-2:]) < size:
        x = resize_short_side(x, size)
    return (x * 255).round().to(torch.uint8)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
