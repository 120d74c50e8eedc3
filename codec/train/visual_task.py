"""The image and video tokenizer tasks (``task: image_tokenizer`` / ``task: video_tokenizer``).

Training items are images [C, S, S] or clips [C, T, S, S] in [0, 1] from ``data.dataset``; item
(index, seed) is deterministic, so a resumed run sees the same batches. Validation: MSE, PSNR and
SSIM of the reconstructions on held-out items (images or frames), next to the baselines a tokenizer
must beat: the mean training image (or frame) and, for video, the previous frame; codebook usage
over the whole validation set; a few originals and reconstructions logged to TensorBoard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import CodecError
from ..eval.image_metrics import psnr, ssim
from ..image import build_image_tokenizer
from ..quantization.metrics import codebook_metrics
from .distributed import DistributedEnv
from .logger import TrainLogger
from .tasks import Task, TaskData
from .visual_config import ImageTrainConfig, VideoTrainConfig, VisualDataConfig
from .visual_objective import VisualObjective, frames_as_images


class SeededItems(Dataset):
    """The first ``count`` items of ``source`` (default: all), addressed by ``(index, seed)`` (what the step
    sampler yields: random crops differ from step to step) or by index (seed 0)."""

    def __init__(self, source: Any, count: int | None = None) -> None:
        self.source, self.count = source, min(count or len(source), len(source))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item: int | tuple[int, int]) -> Tensor:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        return self.source[(index, seed)]


def image_items(data: VisualDataConfig, channels: int, split: str) -> SeededItems:
    from ..image.datasets import image_dataset

    count = data.train_items if split == "train" else data.valid_items
    source = image_dataset(data.dataset, split, data.size, channels, items=count, seed=0 if split == "train" else 1)
    return SeededItems(source, None if split == "train" else count)


def video_items(data: VisualDataConfig, channels: int, split: str) -> SeededItems:
    from ..video.moving_digits import MovingDigits, VideoFolder

    count = data.train_items if split == "train" else data.valid_items
    if data.dataset == "moving_digits":
        if channels != 1:
            raise CodecError("moving_digits videos are grey: set model.channels=1.")
        source = MovingDigits(count, data.frames, size=data.size, split=split, seed=0 if split == "train" else 1)
    elif Path(data.dataset).is_dir():
        source = VideoFolder(data.dataset, data.frames, data.size, channels, "random" if split == "train" else "center")
    else:
        raise CodecError(f"data.dataset must be moving_digits or a folder of videos, got {data.dataset!r}.")
    return SeededItems(source, count)


@dataclass(frozen=True)
class ValidationSet:
    items: SeededItems  # held-out images [C, S, S] or clips [C, T, S, S]
    mean_image: Tensor  # [C, S, S] the mean of (up to MEAN_ITEMS) training images or frames: a baseline


MEAN_ITEMS = 512


def build_visual_data(config: ImageTrainConfig | VideoTrainConfig, run_dir: Path, env: DistributedEnv) -> TaskData:
    items = image_items if isinstance(config, ImageTrainConfig) else video_items
    train = items(config.data, config.model.channels, "train")
    valid = items(config.data, config.model.channels, "valid")
    mean = frames_as_images(torch.stack([train[i] for i in range(min(MEAN_ITEMS, len(train)))])).mean(0)
    return TaskData(train, ValidationSet(valid, mean), config.data.num_workers, collate=torch.stack)


def baselines(valid: Tensor, mean_image: Tensor) -> dict[str, float]:
    """MSE of the mean training image or frame (``mean_image`` [C, H, W]) on held-out images [N, C, H, W] or
    clips [N, C, T, H, W], and for clips of the previous frame (the first one predicted by the mean image)."""
    mean = mean_image[:, None] if valid.dim() == 5 else mean_image  # [C, 1, H, W]: every frame
    results = {"baseline_mean_mse": float((valid - mean).square().mean())}
    if valid.dim() == 5:
        previous = torch.cat([mean.expand_as(valid[:, :, :1]), valid[:, :, :-1]], dim=2)
        results["baseline_previous_mse"] = float((valid - previous).square().mean())
    return results


@torch.no_grad()
def validate_visual(model: nn.Module, valid: ValidationSet, logger: TrainLogger, step: int,
                    config: ImageTrainConfig | VideoTrainConfig) -> dict[str, float]:
    """MSE, PSNR, SSIM and codebook usage on the held-out items, next to the mean / previous-frame baselines."""
    model.eval()
    device = next(model.parameters()).device
    items = torch.stack([valid.items[i] for i in range(len(valid.items))])
    originals, recons, codes = [], [], []
    batches = list(items.split(16))
    for x in logger.track(batches, len(batches), unit="batch"):
        x = x.to(device)
        c = model.encode(x)
        originals.append(x.cpu()), codes.append(c.cpu()), recons.append(model.decode(c).float().cpu())
    x, y, c = torch.cat(originals), torch.cat(recons), torch.cat(codes)
    frames_x, frames_y = frames_as_images(x), frames_as_images(y)
    results = {"mse": float((y - x).square().mean()), "psnr": float(psnr(frames_y, frames_x).mean()),
               "ssim": float(ssim(frames_y, frames_x).mean())}
    results |= baselines(x, valid.mean_image)
    for q, k in enumerate(model.token_spec.codebook_sizes):
        usage, _ = codebook_metrics(c[:, q:q + 1], k)
        results[f"usage_{q}"] = float(usage[0])
    logger.log_valid(step, results)
    if logger.enabled:
        n = min(config.examples, len(x))
        pairs = torch.cat([frames_as_images(x[:n]), frames_as_images(y[:n])], dim=-1)  # original | decoded
        for i, image in enumerate(pairs[:config.examples]):
            logger.add_image(f"valid_{i}/original_decoded", image.clamp(0, 1), step)
    return results


def _build_video_tokenizer(config: VideoTrainConfig) -> nn.Module:
    from ..video.tokenizer import CausalVideoTokenizer

    return CausalVideoTokenizer(config.model)


IMAGE_TOKENIZER = Task(
    name="image_tokenizer",
    config_class=ImageTrainConfig,
    build_model=lambda config: build_image_tokenizer(config.model),
    build_objective=VisualObjective,
    build_data=build_visual_data,
    validate=validate_visual,
    best_metric="mse",
)

VIDEO_TOKENIZER = Task(
    name="video_tokenizer",
    config_class=VideoTrainConfig,
    build_model=_build_video_tokenizer,
    build_objective=VisualObjective,
    build_data=build_visual_data,
    validate=validate_visual,
    best_metric="mse",
)
