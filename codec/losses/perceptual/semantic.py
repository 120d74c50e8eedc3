"""Semantic distillation: pull the codec's first RVQ level towards frozen self-supervised features.

As in SpeechTokenizer (HuBERT teacher) and Mimi (WavLM teacher): a learned linear projection of
the first quantizer level's output is compared with one hidden layer of a frozen SSL model run
on the codec's *input* audio. The SSL models are torchaudio's ``Wav2Vec2Model`` family
(HuBERT, WavLM, wav2vec 2.0) built by ``torchaudio.models`` and filled from a local state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, NamedTuple

import torch
import torchaudio.models as tam
from torch import Tensor, nn

from codec.errors import CodecError
from codec.losses.perceptual.frozen import Frozen, cosine_distance, resample

SSLArchitecture = Literal[
    "hubert_base", "hubert_large", "wavlm_base", "wavlm_base_plus", "wavlm_large", "wav2vec2_base"
]
SSL_SAMPLE_RATE = 16000

_BUILDERS: dict[str, Callable[[], tam.Wav2Vec2Model]] = {
    "hubert_base": tam.hubert_base,
    "hubert_large": tam.hubert_large,
    "wavlm_base": tam.wavlm_base,
    "wavlm_base_plus": tam.wavlm_base,  # same architecture, other weights
    "wavlm_large": tam.wavlm_large,
    "wav2vec2_base": tam.wav2vec2_base,
}
# File names of torchaudio's pipeline bundles (https://download.pytorch.org/torchaudio/models/<file>).
_TORCHAUDIO_FILES = {
    "hubert_base": "hubert_fairseq_base_ls960.pth",
    "hubert_large": "hubert_fairseq_large_ll60k.pth",
    "wavlm_base": "wavlm_base.pth",
    "wavlm_base_plus": "wavlm_base_plus.pth",
    "wavlm_large": "wavlm_large.pth",
    "wav2vec2_base": "wav2vec2_fairseq_base_ls960.pth",
}
_NORMALIZED_INPUT = {"hubert_large", "wavlm_large"}  # bundles that layer-normalise the waveform


class NormalizedInput(nn.Module):
    """A ``Wav2Vec2Model`` whose checkpoint expects every clip scaled to zero mean and unit
    variance first (large HuBERT / WavLM); keeps the ``extract_features`` interface."""

    def __init__(self, model: tam.Wav2Vec2Model) -> None:
        super().__init__()
        self.model = model

    def extract_features(
        self, wav: Tensor, lengths: Tensor | None = None, num_layers: int | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        return self.model.extract_features(nn.functional.layer_norm(wav, wav.shape[-1:]), lengths, num_layers)


class SSLModel(NamedTuple):
    """What ``load_ssl_model`` returns; unpack as ``model, dim = load_ssl_model(...)``."""

    model: nn.Module  # has torchaudio's ``extract_features(wav [N, T] 16 kHz, num_layers=L)``
    dim: int  # feature size of its transformer layers


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CodecError(f"{path} does not hold a state dict.")
    return state


def load_ssl_model(
    path: str | Path, architecture: SSLArchitecture | tam.Wav2Vec2Model, layer: int
) -> SSLModel:
    """Build ``architecture`` (a name, or an already built ``Wav2Vec2Model`` such as a small test
    model) and load the state dict at ``path`` (``.pt``/``.pth`` read with ``weights_only=True``,
    or ``.safetensors``). Layers above ``layer`` (1-based) of a named architecture are dropped.
    """
    path = Path(path)
    if isinstance(architecture, str):
        if architecture not in _BUILDERS:
            raise CodecError(f"unknown SSL architecture {architecture!r}; choose one of {', '.join(_BUILDERS)}.")
        where = (
            f"https://download.pytorch.org/torchaudio/models/{_TORCHAUDIO_FILES[architecture]} "
            "(the state dict of the torchaudio pipeline bundle)"
        )
    else:
        where = "the state dict of your model"
    if not path.is_file():
        raise CodecError(
            f"SSL weights not found at {path}; on a connected machine download {where}, or convert a "
            "Hugging Face checkpoint with torchaudio.models.wav2vec2.utils.import_huggingface_model, "
            "and save it to that path as .pt or .safetensors."
        )
    model = _BUILDERS[architecture]() if isinstance(architecture, str) else architecture
    n_layers = len(model.encoder.transformer.layers)
    if not 1 <= layer <= n_layers:
        raise CodecError(f"SSL layer must be between 1 and {n_layers}, got {layer}.")
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("aux.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        name = architecture if isinstance(architecture, str) else "the given model"
        raise CodecError(f"{path} does not hold weights for {name}: {str(exc).splitlines()[0]}") from exc
    dim = model.encoder.feature_projection.projection.out_features
    if isinstance(architecture, str):
        model.encoder.transformer.layers = model.encoder.transformer.layers[:layer]
        if architecture in _NORMALIZED_INPUT:
            return SSLModel(NormalizedInput(model), dim)
    return SSLModel(model, dim)


class SemanticDistillationLoss(nn.Module):
    """``mean_t (1 - cos(W q_t, s_t))``: distil the first RVQ level onto frozen SSL features.

    ``q`` is the first level's quantized output [B, codec_dim, F], ``W`` a learned linear map
    codec_dim -> ssl_dim (trainable: add this module's parameters to the codec's optimizer),
    ``s`` the output of transformer layer ``layer`` (1-based) of the frozen ``ssl_model`` (any
    module with torchaudio's ``extract_features``) on the codec's *input* audio, without
    gradient. The projected frames are linearly interpolated in time to the SSL frame count; the
    cosine is taken over the feature axis of each frame and averaged over frames and batch
    (Mimi's formulation; SpeechTokenizer's paper instead averages ``-log sigmoid(cos)`` over
    feature dimensions, each cosine taken along time).
    """

    def __init__(self, codec_dim: int, ssl_model: nn.Module, ssl_dim: int, layer: int, sample_rate: int) -> None:
        super().__init__()
        if layer < 1:
            raise CodecError(f"SSL layer is 1-based, got {layer}.")
        self.sample_rate = sample_rate
        self.layer = layer
        self.ssl_dim = ssl_dim
        self.ssl = Frozen(ssl_model)
        self.proj = nn.Linear(codec_dim, ssl_dim)

    def ssl_features(self, audio: Tensor) -> Tensor:
        """[B, C, T] at ``sample_rate`` (channels downmixed) -> SSL features [B, ssl_dim, F_ssl]."""
        with torch.no_grad():
            wav = resample(audio.mean(1), self.sample_rate, SSL_SAMPLE_RATE)
            features, _ = self.ssl.net.extract_features(wav, num_layers=self.layer)
        if len(features) < self.layer or features[-1].shape[-1] != self.ssl_dim:
            raise CodecError(f"the SSL model has no {self.ssl_dim}-dimensional layer {self.layer}.")
        return features[self.layer - 1].transpose(1, 2)

    def forward(self, first_level_quantized: Tensor, audio: Tensor) -> Tensor:
        """first_level_quantized [B, codec_dim, F], audio [B, C, T] -> scalar."""
        if first_level_quantized.dim() != 3 or audio.dim() != 3 or audio.shape[0] != first_level_quantized.shape[0]:
            raise CodecError(
                "expected first_level_quantized [batch, dim, frames] and audio [batch, channels, time] "
                f"with one batch size, got {tuple(first_level_quantized.shape)} and {tuple(audio.shape)}."
            )
        target = self.ssl_features(audio)  # [B, ssl_dim, F_ssl]
        projected = self.proj(first_level_quantized.transpose(1, 2)).transpose(1, 2)  # [B, ssl_dim, F]
        projected = nn.functional.interpolate(projected, size=target.shape[-1], mode="linear", align_corners=False)
        return cosine_distance(projected, target, dim=1).mean()
