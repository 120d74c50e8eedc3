"""SegmentDataset: cuts -> mono clips at the model's rate, level-normalised, cropped and augmented.

Items are addressed by ``(index, seed)``: the seed alone decides the crop offset, the speed,
the gain and the recording conditions, so a batch can be rebuilt exactly (resuming, several
ranks, several workers).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from lhotse import CutSet
from lhotse.cut import Cut
from torch.utils.data import Dataset

from codec.audio.io import read_audio, resample, to_channels

from .conditions import apply_conditions
from .config import DataConfig
from .transforms import (change_speed, fit_length, limit_peak, normalize_rms, random_choice, random_uniform,
                         random_offset)


class SegmentDataset(Dataset[torch.Tensor]):
    """Audio clips of ``cuts`` as float32 tensors [1, T] at ``sample_rate``.

    Every clip is downmixed to mono, resampled and, if ``config.loudness_db`` is set, scaled
    to that RMS level (over the whole clip). Then:

    - training (``train=True``): item ``(index, seed)`` (a bare ``index``: seed 0) is a random
      crop of ``crop_samples`` (clips shorter than that are zero-padded at the end; None =
      the whole clip), sped up by a factor drawn from ``config.speed_factors`` (pitch and tempo
      change together, as in ASR speed perturbation), times a random gain from ``config.gain_db``,
      with the recording conditions of ``config.conditions`` (reverberation, noise, band limits),
      all drawn from ``seed``;
    - validation: item ``index`` (or ``(index, any seed)``) is the first ``valid_seconds`` of
      the clip (shorter clips are kept whole, not padded), without gain; crop_samples is unused.

    Items whose peak would exceed 1 are scaled down to peak 1 (never clipped). With
    ``cache=True`` decoded, resampled clips stay in memory (per DataLoader worker), which
    suits small corpora; otherwise every item decodes its file again.
    """

    def __init__(self, cuts: CutSet, sample_rate: int, crop_samples: int | None, config: DataConfig,
                 train: bool, cache: bool = False) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        if crop_samples is not None and crop_samples <= 0:
            raise ValueError(f"crop_samples must be > 0 or None, got {crop_samples}")
        self.cuts: list[Cut] = list(cuts)
        self.sample_rate = sample_rate
        self.crop_samples = crop_samples
        self.config = config
        self.train = train
        self.cache = cache
        self.valid_samples = max(1, round(config.valid_seconds * sample_rate))
        self._clips: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.cuts)

    def clip(self, index: int) -> torch.Tensor:
        """The whole clip ``index`` as [1, T] at ``sample_rate``, at ``loudness_db`` (no peak limit yet)."""
        if index in self._clips:
            return self._clips[index]
        samples, sr = decode_cut(self.cuts[index])  # [C, T'] at the file's rate
        x = resample(to_channels(samples, 1), sr, self.sample_rate)
        if self.config.loudness_db is not None:
            x = normalize_rms(x, self.config.loudness_db)
        x = x.to(torch.float32).contiguous()
        if self.cache:
            self._clips[index] = x
        return x

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        x = self.clip(index)
        if not self.train:
            return limit_peak(x[..., :self.valid_samples].clone())
        generator = torch.Generator().manual_seed(seed % 2**63)
        length = self.crop_samples or x.shape[-1]
        speed = random_choice(self.config.speed_factors, generator)
        source_length = length if speed == 1.0 else math.ceil(length * speed) + 1  # resampling may lose one
        x = fit_length(x, source_length, random_offset(x.shape[-1], source_length, generator))
        x = fit_length(change_speed(x, speed), length)
        gain_db = random_uniform(*self.config.gain_db, generator)
        x = x * 10 ** (gain_db / 20)  # a new tensor: the cached clip is never modified
        if self.config.conditions.active:
            x = apply_conditions(x, self.config.conditions, self.sample_rate, generator)
        return limit_peak(x)


def decode_cut(cut: Cut) -> tuple[torch.Tensor, int]:
    """(samples [C, T], sample rate) of a cut; whole-file cuts are read with ``read_audio``
    (the real decoded length, even where a header's length is an estimate), others by lhotse."""
    rec = cut.recording
    if rec is not None and len(rec.sources) == 1 and rec.sources[0].type == "file" and not rec.transforms:
        audio = read_audio(rec.sources[0].source)
        x, sr = audio.samples, audio.sample_rate
        if cut.start > 1e-6 or cut.end < rec.duration - 1e-3:  # a part of the recording
            x = x[..., round(cut.start * sr):round(cut.end * sr)]
        return x, sr
    samples = np.asarray(cut.load_audio(), dtype=np.float32)  # [C, T]
    return torch.from_numpy(np.ascontiguousarray(samples.reshape(-1, samples.shape[-1]))), int(cut.sampling_rate)
