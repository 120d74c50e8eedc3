"""Loading an image or video generator with the tokenizer whose tokens it models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.checkpoint import load_checkpoint, read_checkpoint_info
from codec.errors import CodecError

GENERATOR_TYPES = ("image_token_lm", "next_scale_lm", "image_flow_lm")


@dataclass
class LoadedGenerator:
    model: nn.Module  # ImageTokenLM, NextScaleLM or ImageFlowLM (eval mode)
    tokenizer: nn.Module  # the tokenizer it was trained on (same fingerprint)
    device: torch.device

    @property
    def num_classes(self) -> int:
        return self.model.config.num_classes


def load_tokenizer_for(model: nn.Module, name: str | None, device: torch.device | str) -> nn.Module:
    """The tokenizer ``name`` (default: the one the generator records), checked by fingerprint."""
    from codec.audio.registry import load_tokenizer

    name = name or model.config.tokenizer
    try:
        tokenizer = load_tokenizer(name, device)
    except CodecError as e:
        raise CodecError(f"The generator was trained on tokens of {model.config.tokenizer!r}, which cannot be loaded "
                         f"here ({str(e).rstrip('.')}); pass --tokenizer with its name or folder.") from None
    model.check_tokenizer(tokenizer)
    return tokenizer.eval()


def load_generator(spec: str, tokenizer: str | None = None, device: str = "cpu") -> LoadedGenerator:
    """A generator folder (or registered name) and its tokenizer, on ``device``."""
    from codec.audio.registry import resolve_model
    from codec.devices import parse_device

    target = parse_device(device)
    path = resolve_model(spec)
    info = read_checkpoint_info(path)
    if info.model_type not in GENERATOR_TYPES:
        raise CodecError(f"{path} holds a {info.model_type}, not an image or video generator "
                         f"({', '.join(GENERATOR_TYPES)}).")
    model = load_checkpoint(path, target)
    return LoadedGenerator(model, load_tokenizer_for(model, tokenizer, target), torch.device(target))
