"""A small digit classifier: the feature extractor and judge of digit image / video generators.

``DigitClassifier`` maps grey images [B, 1, 32, 32] in [0, 1] (RGB is reduced to luma, other
sizes are resized) to 64-dim features and 10 class logits:

    [B, 1, 32, 32] -> 3 x (conv 3x3 + ReLU + max-pool 2) -> [B, 64, 4, 4]
                   -> linear -> features [B, 64] -> ReLU -> linear -> logits [B, 10]

It is trained on the train split of scikit-learn's digits (``digits_images``) with augmentation
that covers what a generator's output or a moving-digits frame looks like: digits scaled between
0.45 and 1.1 of the frame, placed anywhere they fit (small shifts at full size), rotated by up to
10 degrees, dimmed, blurred and noised. The weights shipped in ``bundled/digit_classifier/`` are
written by ``scripts/train_digit_classifier.py``; their ``info.json`` states the training
settings and the accuracy on every split.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from codec.errors import CodecError
from codec.files import atomic_write, check_writable
from codec.image.datasets import digits_images, resize
from codec.image.io import to_image_channels

BUNDLED_CLASSIFIER = Path(__file__).parent / "bundled" / "digit_classifier"
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "info.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DigitClassifierConfig:
    """widths: channels of the conv stages (each halves the image); feature_dim: size of ``features``."""

    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 64
    num_classes: int = 10
    image_size: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive ints, got {self.widths}")
        for name in ("feature_dim", "num_classes", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(f"image_size must be divisible by 2^len(widths) = {2 ** len(self.widths)}, "
                             f"got {self.image_size}")


class DigitClassifier(nn.Module):
    """Digit features and logits from images [B, C, H, W] in [0, 1] (C = 1 or 3, any H, W)."""

    def __init__(self, config: DigitClassifierConfig = DigitClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 1
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.convs = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.widths)
        self.feature = nn.Linear(channels * side * side, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def prepare(self, images: Tensor) -> Tensor:
        """[B, C, H, W] in [0, 1] -> grey [B, 1, S, S] (S = image_size), as the network reads it."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [B, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
        grey = to_image_channels(images.float().transpose(0, 1), 1).transpose(0, 1)
        return resize(grey, self.config.image_size, self.config.image_size)

    def features(self, images: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, feature_dim]: the layer before the classifier's ReLU (the Fréchet features)."""
        x = self.prepare(images) * 2 - 1
        return self.feature(self.convs(x).flatten(1))

    def logits(self, images: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, num_classes] unnormalised class scores."""
        return self.head(F.relu(self.features(images)))

    def forward(self, images: Tensor) -> Tensor:
        return self.logits(images)


def digits_tensors(split: str, size: int = 32) -> tuple[Tensor, Tensor]:
    """The digits of ``split`` as images [N, 1, size, size] in [0, 1] and labels [N]."""
    dataset = digits_images(split, size)
    return resize(dataset.images, size, size), dataset.labels


def augment_digits(images: Tensor, generator: torch.Generator) -> Tensor:
    """[B, 1, S, S] -> [B, 1, S, S]: each digit scaled by 0.45..1.1 (log-uniform), placed
    uniformly where it stays inside the frame (at least +-S/16 of shift), rotated by +-10 degrees,
    dimmed by 0.7..1, then blurred (Gaussian sigma 0.5..1.5 px, p = 0.3) and noised (std up to
    0.08, p = 0.3); values stay in [0, 1]."""
    b = len(images)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(b, generator=generator)

    scale = torch.exp(uniform(math.log(0.45), math.log(1.1)))
    room = (1 - scale).clamp(min=0.125)  # in normalised coordinates (the frame is [-1, 1]): S/16 pixels
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * room[:, None]
    angle = uniform(-math.pi / 18, math.pi / 18)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inverse = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)  # [B, 2, 2]
    theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)  # output -> input coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, align_corners=False, padding_mode="zeros") * uniform(0.7, 1.0).view(b, 1, 1, 1)

    sigma = torch.where(torch.rand(b, generator=generator) < 0.3, uniform(0.5, 1.5), torch.zeros(b))
    x = _gaussian_blur(x, sigma)
    noise_std = torch.where(torch.rand(b, generator=generator) < 0.3, uniform(0.0, 0.08), torch.zeros(b))
    x = x + noise_std.view(b, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    return x.clamp(0, 1)


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """[B, 1, H, W] blurred by a separable Gaussian of std ``sigma`` [B] pixels (0: unchanged)."""
    radius = 4
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # [B, 9]; sigma -> 0 gives a unit impulse
    b, k = len(x), len(t)
    y = F.conv2d(x.transpose(0, 1), kernel.view(b, 1, k, 1), padding=(radius, 0), groups=b)
    y = F.conv2d(y, kernel.view(b, 1, 1, k), padding=(0, radius), groups=b)
    return y.transpose(0, 1)


def train_digit_classifier(steps: int, seed: int = 0, augment: bool = True, batch_size: int = 128,
                           learning_rate: float = 3e-3,
                           config: DigitClassifierConfig = DigitClassifierConfig()) -> DigitClassifier:
    """A ``DigitClassifier`` trained for ``steps`` Adam steps (cosine-decayed learning rate) on
    random batches of the digits train split, augmented by ``augment_digits``; eval mode."""
    if steps < 1 or batch_size < 1 or learning_rate <= 0:
        raise ValueError(f"steps and batch_size must be >= 1 and learning_rate > 0, got {steps}, {batch_size}, "
                         f"{learning_rate}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = digits_tensors("train", config.image_size)
    model = DigitClassifier(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        batch = augment_digits(images[index], generator) if augment else images[index]
        loss = F.cross_entropy(model.logits(batch), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.inference_mode()
def predict(model: DigitClassifier, images: Tensor, batch_size: int = 512) -> Tensor:
    """[N, C, H, W] -> [N] int64 predicted classes."""
    return torch.cat([model.logits(chunk).argmax(1) for chunk in images.split(batch_size)])


@torch.inference_mode()
def extract_features(model: DigitClassifier, images: Tensor, batch_size: int = 512) -> Tensor:
    """[N, C, H, W] -> [N, feature_dim] features (float32)."""
    return torch.cat([model.features(chunk) for chunk in images.split(batch_size)])


def evaluate_accuracy(model: DigitClassifier, split: str) -> float:
    """The fraction of the digits of ``split`` (train / valid / test) that ``model`` classifies right."""
    images, labels = digits_tensors(split, model.config.image_size)
    return (predict(model, images) == labels).float().mean().item()


def save_digit_classifier(model: DigitClassifier, directory: str | os.PathLike, info: dict[str, Any],
                          force: bool = False) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/info.json`` (the config, plus ``info``:
    accuracy, training settings), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, INFO_FILE):
        check_writable(directory / name, force)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    document = {"format_version": FORMAT_VERSION, "config": asdict(model.config), **info}
    with atomic_write(directory / WEIGHTS_FILE, force) as tmp:
        tmp.write_bytes(save(state))
    with atomic_write(directory / INFO_FILE, force) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n")
    return directory


def read_classifier_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The ``info.json`` of a classifier folder (default: the bundled one), checked."""
    info_path = Path(path or BUNDLED_CLASSIFIER) / INFO_FILE
    try:
        document = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CodecError(f"Digit classifier info {info_path} is missing; train one with "
                         "scripts/train_digit_classifier.py.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CodecError(f"Digit classifier info {info_path} is not valid JSON ({' '.join(str(e).split())}).") from None
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        raise CodecError(f"Digit classifier info {info_path} is not a format-{FORMAT_VERSION} classifier description.")
    return document


def load_digit_classifier(path: str | os.PathLike | None = None) -> DigitClassifier:
    """The classifier in folder ``path`` (default: the bundled weights), in eval mode.

    Weights are read from safetensors only (never unpickled); a missing, corrupt or mismatched
    folder raises CodecError."""
    directory = Path(path or BUNDLED_CLASSIFIER)
    document = read_classifier_info(directory)
    try:
        config = DigitClassifierConfig(**document["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CodecError(f"Digit classifier info {directory / INFO_FILE} holds an invalid config ({e}).") from None
    model = DigitClassifier(config)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CodecError(f"Digit classifier weights {weights_path} are missing.")
    try:
        model.load_state_dict(load_file(str(weights_path)), strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CodecError(f"Digit classifier weights {weights_path} are corrupt or do not match its config "
                         f"({first_line}).") from None
    return model.eval()
