"""Speaker and emotion embedding losses: ``mean(1 - cos(embed(pred), embed(target)))``.

All losses take ``pred`` and ``target`` shaped [B, C, T] at the codec's ``sample_rate``; each
channel is embedded as its own clip (C is folded into the batch) and the distance is averaged
over the B * C clips. The embedders are frozen (see ``Frozen``); gradients reach ``pred``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from codec.losses.perceptual.frozen import Frozen, check_pair, cosine_distance, fold_channels, resample
from codec.losses.perceptual.ge2e import SAMPLE_RATE, GE2EEncoder, bundled_weights_path
from codec.losses.perceptual.speechbrain_models import load_speechbrain_embedder


class _EmbeddingLoss(nn.Module):
    """Shared forward: resample, embed pred and target in one batch, average ``1 - cos``."""

    def __init__(self, sample_rate: int, net: nn.Module, net_sample_rate: int) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.net_sample_rate = net_sample_rate
        self.net = Frozen(net)

    def embed(self, audio: Tensor) -> Tensor:
        """[B, C, T] at ``sample_rate`` -> embeddings [B * C, D]."""
        return self.net(resample(fold_channels(audio), self.sample_rate, self.net_sample_rate))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [B, C, T] -> scalar mean cosine distance of their embeddings."""
        check_pair(pred, target)
        emb = self.embed(torch.cat([pred, target], 0))
        emb_pred, emb_target = emb.chunk(2, 0)
        return cosine_distance(emb_pred, emb_target).mean()


class GE2ESpeakerLoss(_EmbeddingLoss):
    """Speaker loss from resemblyzer's GE2E encoder (see ``ge2e.py`` for the exact front end).

    ``weights_path`` defaults to the ``pretrained.pt`` bundled with the resemblyzer package
    (found without importing it). ``normalize_volume`` applies resemblyzer's increase-only gain
    to -30 dBFS (differentiably); resemblyzer's VAD silence trimming is not applied.
    """

    def __init__(self, sample_rate: int, weights_path: str | None = None, normalize_volume: bool = True) -> None:
        encoder = GE2EEncoder(normalize_volume)
        encoder.load_weights(Path(weights_path) if weights_path is not None else bundled_weights_path())
        super().__init__(sample_rate, encoder, SAMPLE_RATE)


class SpeechBrainEmbeddingLoss(_EmbeddingLoss):
    """Cosine loss on the embeddings of a speechbrain speaker or emotion model.

    ``source``: a local folder holding ``hyperparams.yaml`` and the checkpoints it names, or a
    Hub id (fetched into ``savedir`` by speechbrain when online; offline it raises a CodecError
    asking for a local folder). The embedding path (features -> normalisation -> embedding
    model, or wav2vec2 -> pooling) is run module by module so gradients flow; see
    ``speechbrain_models.py`` for the supported layouts.
    """

    def __init__(self, sample_rate: int, source: str, savedir: str | None = None) -> None:
        embedder = load_speechbrain_embedder(source, savedir)
        super().__init__(sample_rate, embedder, embedder.sample_rate)


class ECAPASpeakerLoss(SpeechBrainEmbeddingLoss):
    """ECAPA-TDNN speaker loss (``speechbrain/spkrec-ecapa-voxceleb`` or its local folder)."""

    def __init__(
        self, sample_rate: int, source: str = "speechbrain/spkrec-ecapa-voxceleb", savedir: str | None = None
    ) -> None:
        super().__init__(sample_rate, source, savedir)


class EmotionLoss(SpeechBrainEmbeddingLoss):
    """Emotion-embedding loss from a speechbrain emotion classifier.

    Supported: folders with the encoder layout (e.g. speechbrain's IEMOCAP ECAPA recipe) and
    the wav2vec2 layout of ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` (the default),
    whose real checkpoint additionally needs ``transformers`` and a cached
    ``facebook/wav2vec2-base``. The embedding is the pooled encoder output, before the head.
    """

    def __init__(
        self,
        sample_rate: int,
        source: str = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP",
        savedir: str | None = None,
    ) -> None:
        super().__init__(sample_rate, source, savedir)
