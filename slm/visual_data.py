"""Training data of image and video generators: a labelled dataset coded once by a tokenizer.

``code_dataset`` runs the tokenizer over every item of a split (digits images, moving-digits videos)
and keeps, per item, its codes [Q, *grid] (every level the tokenizer has), its continuous latent
[D, *grid] (for generators of continuous tokens) and its class label. Coding the digits takes seconds,
4000 moving-digits clips about half a minute, so a run codes its data when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from codec.errors import CodecError

DATASETS = ("digits", "moving_digits")


@dataclass
class CodedItems:
    codes: Tensor  # [N, Q, *grid] int64
    latents: Tensor  # [N, D, *grid] float32
    labels: Tensor  # [N] int64


def _source(dataset: str, split: str, size: int, frames: int, items: int) -> tuple[list[Tensor], Tensor]:
    """(items [C, S, S] or [C, T, S, S], labels [N]) of a split."""
    if dataset == "digits":
        from codec.image.datasets import digits_images

        images = digits_images(split, size)
        return [images[i] for i in range(len(images))], images.labels.clone()
    if dataset == "moving_digits":
        from codec.video.moving_digits import MovingDigits

        videos = MovingDigits(items, frames, size=size, split=split, seed={"train": 0, "valid": 1, "test": 2}[split])
        return [videos[i] for i in range(items)], torch.stack([videos.label(i)[0] for i in range(items)])
    raise CodecError(f"data.dataset must be one of {', '.join(DATASETS)}, got {dataset!r}.")


@torch.no_grad()
def code_items(tokenizer: nn.Module, items: list[Tensor], labels: Tensor, batch_size: int = 64) -> CodedItems:
    """Codes and latents of ``items`` (each [C, ...]) by ``tokenizer`` (every level)."""
    device = next(tokenizer.parameters()).device
    codes, latents = [], []
    for start in range(0, len(items), batch_size):
        x = torch.stack(items[start:start + batch_size]).to(device)
        latent = tokenizer.encode_latent(x)
        latents.append(latent.float().cpu())
        codes.append(tokenizer.quantize_latent(latent).cpu())
    return CodedItems(torch.cat(codes), torch.cat(latents), labels.long())


def code_dataset(tokenizer: nn.Module, dataset: str, split: str, size: int, frames: int = 9,
                 items: int = 2000) -> CodedItems:
    """``dataset``'s ``split`` coded by ``tokenizer``."""
    return code_items(tokenizer, *_source(dataset, split, size, frames, items))


class CodedDataset(Dataset):
    """Items (codes [Q, *grid], latent [D, *grid], label) addressed by index or (index, seed)."""

    def __init__(self, coded: CodedItems) -> None:
        self.coded = coded

    def __len__(self) -> int:
        return len(self.coded.labels)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        index = item[0] if isinstance(item, tuple) else item
        return self.coded.codes[index], self.coded.latents[index], self.coded.labels[index]


def collate(items: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    codes, latents, labels = zip(*items)
    return torch.stack(codes), torch.stack(latents), torch.stack(labels)
