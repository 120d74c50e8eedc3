"""DataConfig: which corpus to read and how its clips become training and validation audio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from .conditions import ConditionsConfig

CorpusName = Literal["librispeech", "libritts", "vctk", "ljspeech", "commonvoice", "mls", "folder", "devspeech"]
SPLIT_CORPORA = ("librispeech", "libritts", "commonvoice", "mls")  # corpora whose parts `subsets` names
LANGUAGE_CORPORA = ("commonvoice", "mls")


@dataclass(frozen=True)
class DataConfig:
    """A corpus and the preparation of its audio.

    The corpus layouts are described in ``recipes/<corpus>/README.md``. Fields that change
    which clips are selected (corpus, data_dir, subsets, language, valid_clips, min_seconds,
    extra_train_dirs) key the prepared manifests; the others only change how clips are turned
    into tensors.
    """

    corpus: CorpusName
    data_dir: str = ""  # corpus root; the CLI overrides it with --data-dir
    subsets: tuple[str, ...] = ()  # parts/splits to train on (e.g. "train-clean-100"); () = the corpus' training parts
    language: str = ""  # Common Voice / MLS language, e.g. "en" or "english"
    crop_seconds: float = 1.0  # length of a training crop (not the codec's own model.segment_seconds)
    valid_clips: int = 8  # clips held out for validation (chosen deterministically)
    valid_seconds: float = 4.0  # validation clips are cut to at most this length
    loudness_db: float | None = -20.0  # RMS level of each clip in dBFS; None = keep the level as recorded
    gain_db: tuple[float, float] = (-6.0, 6.0)  # random training gain range in dB; (0, 0) = off
    speed_factors: tuple[float, ...] = ()  # training speed perturbation, one factor drawn per crop; () = off
    conditions: ConditionsConfig = field(default_factory=ConditionsConfig)  # training reverb, noise, band
    #   limits (conditions.py); off by default
    min_seconds: float = 0.0  # drop clips shorter than this
    extra_train_dirs: tuple[str, ...] = ()  # more training audio, read like the `folder` corpus (relative to
    #   the current folder); added to the training clips only, so validation stays the corpus' own
    num_workers: int = 0  # DataLoader worker processes

    def __post_init__(self) -> None:
        object.__setattr__(self, "subsets", tuple(self.subsets))  # lists from JSON/YAML configs
        object.__setattr__(self, "extra_train_dirs", tuple(self.extra_train_dirs))
        object.__setattr__(self, "gain_db", tuple(float(g) for g in self.gain_db))
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))
        names = get_args(CorpusName)
        low, high = self.gain_db if len(self.gain_db) == 2 else (math.nan, math.nan)
        checks = [
            (self.corpus in names, f"unknown corpus {self.corpus!r}; expected one of {', '.join(names)}"),
            (all(isinstance(s, str) and s for s in self.subsets),
             f"subsets must be non-empty names, got {self.subsets}"),
            (all(isinstance(d, str) and d for d in self.extra_train_dirs),
             f"extra_train_dirs must be non-empty folder paths, got {self.extra_train_dirs}"),
            (not self.subsets or self.corpus in SPLIT_CORPORA,
             f"subsets apply only to {', '.join(SPLIT_CORPORA)}; corpus {self.corpus!r} has none"),
            (not self.language or self.corpus in LANGUAGE_CORPORA,
             f"language applies only to {', '.join(LANGUAGE_CORPORA)}, not to corpus {self.corpus!r}"),
            (_finite(self.crop_seconds) and self.crop_seconds > 0,
             f"crop_seconds must be > 0, got {self.crop_seconds}"),
            (self.valid_clips >= 0, f"valid_clips must be >= 0, got {self.valid_clips}"),
            (_finite(self.valid_seconds) and self.valid_seconds > 0,
             f"valid_seconds must be > 0, got {self.valid_seconds}"),
            (self.loudness_db is None or (_finite(self.loudness_db) and self.loudness_db <= 0),
             f"loudness_db must be <= 0 dBFS or null, got {self.loudness_db}"),
            (_finite(low) and _finite(high) and low <= high,
             f"gain_db must be two finite numbers [low, high] with low <= high, got {self.gain_db}"),
            (all(0.5 <= f <= 2.0 for f in self.speed_factors),
             f"speed_factors must lie in [0.5, 2], got {self.speed_factors}"),
            (_finite(self.min_seconds) and self.min_seconds >= 0, f"min_seconds must be >= 0, got {self.min_seconds}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
