"""Training configs of the image and video tokenizers (``task: image_tokenizer`` / ``video_tokenizer``):
the loop's TrainConfig plus the tokenizer, its data and its losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..discriminators.patch import PatchDiscriminatorConfig
from ..image.config import ImageTokenizerConfig
from ..video.config import VideoTokenizerConfig
from .config import TrainConfig


@dataclass(frozen=True)
class VisualDataConfig:
    """Where training images or clips come from.

    dataset: images: "digits" (scikit-learn), "samples" (scikit-image's photos, random crops), "faces"
             (scikit-image's face subset) or a folder of PNG/JPEG files; video: "moving_digits" or a
             folder of video files.
    """

    dataset: str = "digits"
    size: int = 32  # side of training images / frames
    frames: int = 9  # video: frames per clip (1 + k x the temporal downsampling)
    train_items: int = 10000  # generated or cropped items per pass (digits and faces: the whole split)
    valid_items: int = 128
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("data.dataset must name a dataset or a folder")
        if self.size < 1 or self.frames < 1 or self.train_items < 1 or self.valid_items < 1 or self.num_workers < 0:
            raise ValueError("data.size, frames, train_items and valid_items must be positive, num_workers >= 0")


@dataclass(frozen=True)
class VisualLossConfig:
    """Weights of the reconstruction, quantizer and adversarial losses (0 disables one)."""

    l1: float = 1.0
    l2: float = 0.0
    ssim: float = 0.2  # of 1 - SSIM
    commitment: float = 0.25  # scales the quantizer's commitment loss
    codebook: float = 1.0  # scales its codebook loss (LFQ: the entropy penalty)
    adversarial: float = 0.0  # generator loss of a patch discriminator; 0 trains without one
    adversarial_start: int = 0  # the discriminator learns from this step, the generator sees it from here
    discriminator: PatchDiscriminatorConfig = field(default_factory=PatchDiscriminatorConfig)
    disc_lr: float = 2e-4
    dead_code_window: int = 200  # a code unused for this many steps counts as dead

    def __post_init__(self) -> None:
        weights = (self.l1, self.l2, self.ssim, self.commitment, self.codebook, self.adversarial)
        if any(w < 0 for w in weights) or self.adversarial_start < 0 or self.disc_lr <= 0 or self.dead_code_window < 1:
            raise ValueError("loss weights and adversarial_start must be >= 0, disc_lr and dead_code_window positive")
        if self.l1 + self.l2 + self.ssim == 0:
            raise ValueError("at least one reconstruction loss (l1, l2, ssim) needs a positive weight")


@dataclass(frozen=True)
class ImageTrainConfig(TrainConfig):
    task: str = "image_tokenizer"
    model: ImageTokenizerConfig = field(default_factory=ImageTokenizerConfig)
    data: VisualDataConfig = field(default_factory=VisualDataConfig)
    losses: VisualLossConfig = field(default_factory=VisualLossConfig)
    examples: int = 8  # validation images logged to TensorBoard

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.channels != self.losses.discriminator.channels and self.losses.adversarial:
            raise ValueError("losses.discriminator.channels must equal model.channels")


@dataclass(frozen=True)
class VideoTrainConfig(TrainConfig):
    task: str = "video_tokenizer"
    model: VideoTokenizerConfig = field(default_factory=VideoTokenizerConfig)
    data: VisualDataConfig = field(default_factory=lambda: VisualDataConfig(dataset="moving_digits"))
    losses: VisualLossConfig = field(default_factory=VisualLossConfig)
    examples: int = 4  # validation clips logged to TensorBoard (frames side by side)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.channels != self.losses.discriminator.channels and self.losses.adversarial:
            raise ValueError("losses.discriminator.channels must equal model.channels")
