"""Shared pieces of the perceptual losses: a frozen-network wrapper and small tensor helpers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torchaudio.functional as AF
from torch import Tensor, nn

from codec.errors import CodecError


class Frozen(nn.Module):
    """Holds a pretrained network that is never trained.

    The wrapped ``net`` is in eval mode with ``requires_grad=False`` on every parameter, and it
    stays in eval mode when a parent calls ``.train()`` (so dropout, batch-norm statistics and
    speechbrain's running normalisers never change). Gradients still flow through it to its
    inputs. Its weights are left out of ``state_dict()`` (they come from the pretrained file,
    not from the codec's checkpoint; read them with ``frozen.net.state_dict()``); loading a
    parent's state dict keeps the current weights.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        for p in self.net.parameters():
            p.requires_grad_(False)
        super().train(False)
        self._register_load_state_dict_pre_hook(self._fill_own_weights, with_module=True)

    def train(self, mode: bool = True) -> Frozen:
        """Ignore ``mode``: a frozen network is always in eval mode."""
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """Frozen pretrained weights are not part of the owner's checkpoint."""
        return OrderedDict() if destination is None else destination

    @staticmethod
    def _fill_own_weights(module: Frozen, state_dict: dict, prefix: str, *_: Any) -> None:
        for name, value in nn.Module.state_dict(module, keep_vars=True).items():
            state_dict.setdefault(prefix + name, value.detach())


def fold_channels(x: Tensor) -> Tensor:
    """[B, C, T] -> [B * C, T]: every channel is scored as its own clip."""
    if x.dim() != 3:
        raise CodecError(f"expected audio shaped [batch, channels, time], got shape {tuple(x.shape)}.")
    return x.reshape(-1, x.shape[-1])


def check_pair(pred: Tensor, target: Tensor) -> None:
    """Raise a CodecError unless ``pred`` and ``target`` are [B, C, T] tensors of one shape."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise CodecError(
            f"pred and target must both be [batch, channels, time] with one shape, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}."
        )


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Differentiable band-limited resampling along the last axis (identity when rates match)."""
    if orig_sr == new_sr:
        return x
    return AF.resample(x, orig_sr, new_sr)


def cosine_distance(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """``1 - cos(a, b)`` along ``dim``, computed as ``|â - b̂|² / 2`` so equal inputs give exactly 0."""
    a = nn.functional.normalize(a, dim=dim, eps=1e-12)
    b = nn.functional.normalize(b, dim=dim, eps=1e-12)
    return 0.5 * (a - b).pow(2).sum(dim)
