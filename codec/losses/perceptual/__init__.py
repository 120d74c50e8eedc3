"""Perceptual losses computed through frozen pretrained networks (speaker, emotion, pitch, SSL)."""

from codec.losses.perceptual.frozen import Frozen
from codec.losses.perceptual.pitch import PitchLoss, load_crepe
from codec.losses.perceptual.semantic import (
    NormalizedInput,
    SemanticDistillationLoss,
    SSLArchitecture,
    SSLModel,
    load_ssl_model,
)
from codec.losses.perceptual.speaker import ECAPASpeakerLoss, EmotionLoss, GE2ESpeakerLoss, SpeechBrainEmbeddingLoss
from codec.losses.perceptual.speechbrain_models import SpeechBrainEmbedder, load_speechbrain_embedder

__all__ = [
    "ECAPASpeakerLoss",
    "EmotionLoss",
    "Frozen",
    "GE2ESpeakerLoss",
    "NormalizedInput",
    "PitchLoss",
    "SSLArchitecture",
    "SSLModel",
    "SemanticDistillationLoss",
    "SpeechBrainEmbedder",
    "SpeechBrainEmbeddingLoss",
    "load_crepe",
    "load_speechbrain_embedder",
    "load_ssl_model",
]
