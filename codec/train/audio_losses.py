"""The audio codec's losses on its reconstruction, built once from the config.

``balanced`` losses are functions of the decoder output (reconstruction, perceptual,
adversarial): a weighted sum or the gradient balancer combines them. ``direct`` losses act
on the quantizer (commitment / codebook, semantic distillation of the first level) and are
always added with their own weights, outside the balancer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..audio.model import AudioCodec, CodecOutput
from ..losses.adversarial import feature_matching_loss, generator_loss
from ..losses.balancer import weighted_sum
from ..losses.spectral import (ComplexSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, PhaseLoss, SISDRLoss,
                              TimeL1Loss)
from .audio_config import AudioTrainConfig


@dataclass
class LossTerms:
    balanced: dict[str, Tensor]  # scalar losses of the decoder output
    direct: dict[str, Tensor]  # scalar losses of the quantizer


def _perceptual_losses(config: AudioTrainConfig, model: AudioCodec) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Frozen-network losses enabled in the config (imported lazily: they load weights)."""
    from ..losses import perceptual

    p, sr = config.perceptual, model.sample_rate
    modules: dict[str, nn.Module] = {}
    if p.speaker_weight > 0:
        modules["speaker"] = (perceptual.GE2ESpeakerLoss(sr) if p.speaker_model == "ge2e"
                              else perceptual.ECAPASpeakerLoss(sr, p.speaker_model))
    if p.emotion_weight > 0:
        modules["emotion"] = perceptual.EmotionLoss(sr, p.emotion_model)
    if p.pitch_weight > 0:
        modules["pitch"] = perceptual.PitchLoss(sr, p.pitch_model)
    weights = {"speaker": p.speaker_weight, "emotion": p.emotion_weight, "pitch": p.pitch_weight}
    return modules, {k: weights[k] for k in modules}


class GeneratorLosses(nn.Module):
    """Reconstruction, perceptual and adversarial losses of the decoder output; quantizer losses."""

    def __init__(self, config: AudioTrainConfig, model: AudioCodec) -> None:
        super().__init__()
        rc, adv, sr = config.losses, config.adversarial, model.sample_rate
        candidates = {
            "mel": (rc.mel_weight, lambda: MultiScaleMelLoss(sr, rc.mel)),
            "stft": (rc.stft_weight, lambda: MultiResolutionSTFTLoss(rc.stft)),
            "phase": (rc.phase_weight, lambda: PhaseLoss(sr, rc.phase)),
            "complex": (rc.complex_weight, lambda: ComplexSTFTLoss(sr, rc.complex)),
            "time_l1": (rc.time_l1_weight, TimeL1Loss),
            "sisdr": (rc.sisdr_weight, SISDRLoss),
        }
        self.reconstruction = nn.ModuleDict({k: make() for k, (w, make) in candidates.items() if w > 0})
        self.weights = {k: w for k, (w, _) in candidates.items() if w > 0}
        perceptual, perceptual_weights = _perceptual_losses(config, model)
        self.perceptual = nn.ModuleDict(perceptual)
        self.weights.update(perceptual_weights)
        if adv.discriminator is not None:
            self.weights.update(adversarial=adv.adversarial_weight, feature_matching=adv.feature_matching_weight)
        self.adversarial_kind, self.relative_fm = adv.loss, adv.relative_feature_matching
        self.semantic = None
        self.direct_weights = {"commitment": config.commitment_weight}
        p = config.perceptual
        if p.semantic_weight > 0:
            from ..losses.perceptual import SemanticDistillationLoss, load_ssl_model

            ssl, ssl_dim = load_ssl_model(p.semantic_model, p.semantic_architecture, p.semantic_layer)
            self.semantic = SemanticDistillationLoss(config.model.seanet.dimension, ssl, ssl_dim, p.semantic_layer, sr)
            self.direct_weights["semantic"] = p.semantic_weight
        if not self.weights:
            raise ValueError("no loss on the decoder output is enabled; set losses.mel_weight or another weight")

    def balanced_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def direct_weight(self, name: str) -> float:
        return self.direct_weights[name]

    def weighted_sum(self, losses: dict[str, Tensor]) -> Tensor:
        return weighted_sum(losses, self.weights)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the codec (the semantic projection); frozen networks excluded."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, out: CodecOutput, target: Tensor, discriminator: nn.Module | None = None) -> LossTerms:
        """Losses of a reconstruction ``out`` of ``target`` [B, C, T]; adversarial ones if a discriminator is given."""
        pred = out.audio
        balanced = {k: loss(pred, target) for k, loss in self.reconstruction.items()}
        balanced.update({k: loss(pred, target) for k, loss in self.perceptual.items()})
        if discriminator is not None:
            fake = discriminator(pred)
            with torch.no_grad():
                real = discriminator(target)
            balanced["adversarial"] = generator_loss(fake, self.adversarial_kind)
            balanced["feature_matching"] = feature_matching_loss(real, fake, self.relative_fm)
        direct = {"commitment": out.quantizer.commitment_loss + out.quantizer.codebook_loss}
        if self.semantic is not None and out.quantizer.first_level is not None:
            direct["semantic"] = self.semantic(out.quantizer.first_level, target)
        return LossTerms(balanced, direct)
