"""Video datasets for tokenizer training: every item is float32 [C, T, S, S] in [0, 1].

- ``MovingDigits``: scikit-learn digits bouncing inside a black frame (a small, offline
  Moving-MNIST), drawn on the fly: item i is the same video for the same arguments.
- ``VideoFolder``: clips of every video file under a folder, read with ``read_video``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from codec.errors import CodecError
from codec.files import files_under
from codec.image.datasets import (CROP_MODES, SPLITS, Item, center_crop, digits_split, item_rng, random_crop,
                                  resize, resize_short_side)

from .io import VIDEO_SUFFIXES, VideoInfo, probe_video, read_video

logger = logging.getLogger(__name__)


class MovingDigits(Dataset[torch.Tensor]):
    """``num_videos`` videos [1, frames, size, size] of ``num_digits`` digits moving in straight
    lines and bouncing off the frame's edges.

    Each digit is a digit of ``split`` (the split of ``digits_images``: train, valid and test
    videos never share a digit image), bilinearly upsampled to ``digit_size``; digits overlap by
    their maximum. Item i draws, from (seed, split, i): the digits, their start positions
    (uniform in the frame) and velocities (uniform direction, speed 1 to 3 pixels per frame at
    size 32, in proportion otherwise). Positions are rounded to whole pixels; a digit is never
    cut by the frame's edge. A ``(index, sample_seed)`` item is the video ``index``.
    """

    def __init__(self, num_videos: int, frames: int, size: int = 32, digit_size: int = 16, num_digits: int = 1,
                 split: str = "train", seed: int = 0) -> None:
        if num_videos < 1 or frames < 1 or num_digits < 1:
            raise ValueError(f"num_videos, frames and num_digits must be >= 1, got {num_videos}, {frames}, "
                             f"{num_digits}")
        if not 1 <= digit_size <= size:
            raise ValueError(f"digit_size must be in [1, size={size}], got {digit_size}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.num_videos, self.frames, self.size = num_videos, frames, size
        self.digit_size, self.num_digits, self.split, self.seed = digit_size, num_digits, split, seed
        images, self.digit_labels = digits_split(split)
        self.digits = resize(images[:, 0], digit_size, digit_size)  # [N, d, d]

    def __len__(self) -> int:
        return self.num_videos

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Digit indices [K], start positions [K, 2] (top, left) and velocities [K, 2] of video ``index``."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video index {index} out of range [0, {self.num_videos})")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        k = self.num_digits
        choice = rng.integers(len(self.digits), size=k)
        start = rng.uniform(0, self.size - self.digit_size, size=(k, 2))
        angle = rng.uniform(0, 2 * math.pi, size=k)
        speed = rng.uniform(1, 3, size=k) * self.size / 32
        return choice, start, speed[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)

    def trajectory(self, index: int) -> torch.Tensor:
        """[K, T, 2] int64: the (top, left) pixel of each digit in each frame of video ``index``."""
        _, start, velocity = self._draw(index)
        span = self.size - self.digit_size
        t = np.arange(self.frames)[None, :, None]
        unfolded = start[:, None] + velocity[:, None] * t  # straight lines; folded back into [0, span]:
        folded = span - np.abs(np.mod(unfolded, 2 * span) - span) if span else np.zeros_like(unfolded)
        return torch.from_numpy(np.rint(folded)).long()

    def label(self, index: int) -> torch.Tensor:
        """[K] int64: the classes (0..9) of the digits of video ``index``."""
        return self.digit_labels[torch.from_numpy(self._draw(index)[0])]

    def __getitem__(self, item: Item) -> torch.Tensor:
        index = item[0] if isinstance(item, tuple) else item
        choice, _, _ = self._draw(index)
        positions = self.trajectory(index).tolist()
        video = torch.zeros(self.frames, self.size, self.size)
        d = self.digit_size
        for digit, path in zip(choice.tolist(), positions):
            for t, (top, left) in enumerate(path):
                window = video[t, top:top + d, left:left + d]
                torch.maximum(window, self.digits[digit], out=window)
        return video[None]


class VideoFolder(Dataset[torch.Tensor]):
    """Clips [channels, frames, size, size] of every video file (``VIDEO_SUFFIXES``, any case)
    under ``folder``, recursively, in sorted order.

    Every file is probed once here (a broken file fails now, naming it); files with fewer than
    ``frames`` frames are left out (logged). crop: "random" (a uniformly placed run of ``frames``
    frames; shorter side resized to ``size``, a uniformly placed square, flipped left-right with
    probability 1/2), "center" (the middle frames and the central square) or "resize" (the
    middle frames squeezed to size x size). Random draws come from (seed, index, sample_seed).
    """

    def __init__(self, folder: str | os.PathLike, frames: int, size: int, channels: int = 3,
                 crop: str = "random", seed: int = 0) -> None:
        if frames < 1 or size < 1:
            raise ValueError(f"frames and size must be >= 1, got {frames} and {size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        root = Path(folder)
        if not root.is_dir():
            raise CodecError(f"Video folder '{root}' does not exist or is not a folder.")
        files = files_under(root, VIDEO_SUFFIXES)
        if not files:
            raise CodecError(f"Video folder '{root}' holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))}).")
        probed = [(p, probe_video(p)) for p in files]
        kept = [(p, info) for p, info in probed if info.frames >= frames]
        if len(kept) < len(probed):
            logger.warning("%d of %d videos in %s have fewer than %d frames and are left out",
                           len(probed) - len(kept), len(probed), root, frames)
        if not kept:
            raise CodecError(f"Video folder '{root}' holds no video with at least {frames} frames.")
        self.files: list[Path] = [p for p, _ in kept]
        self.infos: list[VideoInfo] = [info for _, info in kept]
        self.frames, self.size, self.channels, self.crop, self.seed = frames, size, channels, crop, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: Item) -> torch.Tensor:
        index, rng = item_rng(self.seed, item)
        spare = self.infos[index].frames - self.frames
        start = int(rng.integers(spare + 1)) if self.crop == "random" else spare // 2
        clip, _ = read_video(self.files[index], self.channels, max_frames=self.frames, start=start)
        if self.crop == "resize":
            return resize(clip, self.size, self.size)
        clip = resize_short_side(clip, self.size)
        if self.crop == "center":
            return center_crop(clip, self.size).contiguous()
        clip = random_crop(clip, self.size, rng)
        return (clip.flip(-1) if rng.random() < 0.5 else clip).contiguous()
