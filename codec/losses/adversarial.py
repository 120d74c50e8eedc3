"""Adversarial and feature-matching losses over `DiscriminatorOutput` lists.

Every loss is the mean over sub-discriminators (EnCodec/audiocraft normalise by their
number; DAC sums instead, i.e. DAC's values are ours x the number of sub-discriminators).
Within one sub-discriminator the logits are averaged over all their elements.

    hinge  D: relu(1 - D(real)) + relu(1 + D(fake))   G: relu(1 - D(fake))
    lsgan  D: (1 - D(real))^2 + D(fake)^2              G: (1 - D(fake))^2

For the discriminator step pass outputs computed on `fake.detach()`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch.nn.functional as F
from torch import Tensor

from codec.discriminators.base import DiscriminatorOutput

AdversarialLoss = Literal["hinge", "lsgan"]


def _check_kind(kind: str) -> None:
    if kind not in get_args(AdversarialLoss):
        raise ValueError(f"unknown adversarial loss {kind!r}; expected one of {get_args(AdversarialLoss)}")


def _check_pair(real: list[DiscriminatorOutput], fake: list[DiscriminatorOutput]) -> None:
    if len(real) == 0 or len(real) != len(fake):
        raise ValueError(f"need the same, non-zero number of real and fake outputs, got {len(real)} and {len(fake)}")


def discriminator_loss(
    real: list[DiscriminatorOutput], fake: list[DiscriminatorOutput], kind: AdversarialLoss = "hinge"
) -> Tensor:
    """Scalar loss teaching each sub-discriminator to score real high and fake low."""
    _check_kind(kind)
    _check_pair(real, fake)
    total = real[0].logits.new_zeros(())
    for r, f in zip(real, fake):
        if kind == "hinge":
            total = total + F.relu(1 - r.logits).mean() + F.relu(1 + f.logits).mean()
        else:
            total = total + (1 - r.logits).pow(2).mean() + f.logits.pow(2).mean()
    return total / len(real)


def generator_loss(fake: list[DiscriminatorOutput], kind: AdversarialLoss = "hinge") -> Tensor:
    """Scalar loss pushing every sub-discriminator to score the generated audio as real."""
    _check_kind(kind)
    if len(fake) == 0:
        raise ValueError("need at least one discriminator output")
    total = fake[0].logits.new_zeros(())
    for f in fake:
        total = total + (F.relu(1 - f.logits).mean() if kind == "hinge" else (1 - f.logits).pow(2).mean())
    return total / len(fake)


def feature_matching_loss(
    real: list[DiscriminatorOutput], fake: list[DiscriminatorOutput], relative: bool = True, eps: float = 1e-8
) -> Tensor:
    """Mean over all feature maps of L1(fake, real), each divided by mean(|real|) when `relative`.

    relative=True is EnCodec's normalised feature matching (invariant to scaling both sides);
    relative=False the plain mean of L1 distances (HiFi-GAN / DAC, averaged rather than summed).
    Real features are detached; the denominator is clamped to at least `eps`.
    """
    _check_pair(real, fake)
    total, count = real[0].logits.new_zeros(()), 0
    for r, f in zip(real, fake):
        if len(r.features) != len(f.features):
            raise ValueError(f"real and fake have {len(r.features)} and {len(f.features)} feature maps")
        for feat_real, feat_fake in zip(r.features, f.features):
            if feat_real.shape != feat_fake.shape:
                raise ValueError(f"feature shapes differ: {tuple(feat_real.shape)} vs {tuple(feat_fake.shape)}")
            feat_real = feat_real.detach()
            loss = F.l1_loss(feat_fake, feat_real)
            if relative:
                loss = loss / feat_real.abs().mean().clamp_min(eps)
            total, count = total + loss, count + 1
    if count == 0:
        raise ValueError("the outputs hold no feature maps")
    return total / count


__all__ = ["AdversarialLoss", "discriminator_loss", "feature_matching_loss", "generator_loss"]
