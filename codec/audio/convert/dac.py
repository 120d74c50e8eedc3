"""DAC (descriptinc/descript-audio-codec) -> AudioCodec.

DAC is a non-causal SEANet with Snake activations, three residual units per resolution
(kernel 7, dilations 1, 3, 9, no channel compression, identity shortcut), no LSTM, a decoder
wider than the encoder ending in tanh, and a factorized RVQ (l2-normalised codebooks of
``codebook_dim`` behind weight-normed 1x1 projections). Every piece maps onto this toolkit's
modules, so weights map by renaming keys. Each resolution of DAC is one block of five layers
(three residual units, Snake, strided conv), which our flat ``model`` Sequential holds at
``1 + 5 * (block - 1) + layer``::

    encoder.block.0.weight_g                   -> encoder.model.0.conv.parametrizations.weight.original0
    encoder.block.2.block.1.block.3.weight_v   -> encoder.model.7.block.3.conv.parametrizations.weight.original1
    encoder.block.2.block.3.alpha              -> encoder.model.9.alpha
    encoder.block.5.alpha, encoder.block.6.*   -> encoder.model.21.alpha, encoder.model.22.conv.*
    decoder.model.1.block.1.bias               -> decoder.model.2.convtr.bias   (the transposed conv)
    quantizer.quantizers.3.in_proj.weight_g    -> quantizer.levels.3.project_in.parametrizations.weight.original0
    quantizer.quantizers.3.codebook.weight     -> quantizer.levels.3.codebook.weight

Transposed convs: DAC's ``ConvTranspose1d(2s, s, padding=ceil(s/2))`` trims ceil(s/2) samples
from both ends (``convtr_trim="symmetric"``). For even strides (44.1 kHz: 8, 8, 4, 2) that is
L * s samples, as everywhere in this toolkit. An odd stride (16 and 24 kHz: 8, 5, 4, 2) gives
L * s - 1, so DAC decodes F frames to F * hop - 8 samples; the converted decoder computes those
same samples and appends 8 zeros to keep its F * hop contract (``decoder_output_deficit``).

Codes equal DAC's ``model.encode(model.preprocess(x, sr), n_q)`` and decoded audio equals
``model.decode(model.quantizer.from_codes(codes)[0])``, within float rounding (see the tests).

Official checkpoints (``DAC.save(path, package=False)``, e.g. ``weights_44khz_8kbps_0.0.1.pth``)
are a dict ``{"state_dict": {...}, "metadata": {"kwargs": {...DAC constructor arguments...}}}``;
``convert_dac_checkpoint(torch.load(path, map_location="cpu", weights_only=True))`` converts one
without the ``dac`` package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ...quantization import QuantizerConfig
from ..model import AudioCodec, AudioCodecConfig
from ..seanet import SEANetConfig

if TYPE_CHECKING:
    from dac import DAC

_BLOCK = 5  # layers per resolution: 3 residual units, Snake, strided (transposed) conv
_SEANET_KEY = re.compile(r"^(encoder\.block|decoder\.model)\.(\d+)\.(?:block\.(\d+)\.)?(?:block\.(\d+)\.)?(\w+)$")
_QUANTIZER_KEY = re.compile(r"^quantizer\.quantizers\.(\d+)\.(in_proj|out_proj|codebook)\.(\w+)$")
_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1",
                "bias": "bias"}
_DAC_DEFAULTS = {"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None, "decoder_dim": 1536,
                 "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8,
                 "quantizer_dropout": False, "sample_rate": 44100}


def dac_config_from_kwargs(kwargs: Mapping[str, Any]) -> AudioCodecConfig:
    """The AudioCodecConfig of ``DAC(**kwargs)``: missing arguments take DAC's defaults, unknown
    ones are ignored (as ``DAC.load`` does)."""
    args = {**_DAC_DEFAULTS, **{k: v for k, v in kwargs.items() if k in _DAC_DEFAULTS}}
    encoder_rates = tuple(int(r) for r in args["encoder_rates"])
    decoder_rates = tuple(int(r) for r in args["decoder_rates"])
    if decoder_rates != encoder_rates[::-1]:
        raise ValueError(f"AudioCodec needs decoder_rates = reversed encoder_rates; this DAC has "
                         f"encoder_rates={list(encoder_rates)}, decoder_rates={list(decoder_rates)}")
    encoder_dim, decoder_dim = int(args["encoder_dim"]), int(args["decoder_dim"])
    layers = 2 ** len(decoder_rates)
    if decoder_dim % layers:
        raise ValueError(f"AudioCodec needs decoder_dim divisible by 2**len(decoder_rates) = {layers} "
                         f"(DAC floors the halved widths); got decoder_dim={decoder_dim}")
    latent_dim = args["latent_dim"]
    latent_dim = encoder_dim * 2 ** len(encoder_rates) if latent_dim is None else int(latent_dim)
    codebook_dim = args["codebook_dim"]
    if not isinstance(codebook_dim, int):
        dims = {int(d) for d in codebook_dim}
        if len(dims) != 1:
            raise ValueError(f"AudioCodec needs one codebook_dim for every level; this DAC has {list(codebook_dim)}")
        codebook_dim = dims.pop()
    seanet = SEANetConfig(
        channels=1,
        dimension=latent_dim,
        n_filters=encoder_dim,
        ratios=decoder_rates,
        n_residual_layers=3,
        kernel_size=7,
        last_kernel_size=3,
        residual_kernel_size=7,
        dilation_base=3,
        compress=1,
        true_skip=True,
        lstm_layers=0,
        activation="snake",
        norm="weight_norm",
        causal=False,
        pad_mode="constant",
        decoder_n_filters=decoder_dim // layers,
        decoder_last_kernel_size=7,
        final_activation="tanh",
        convtr_trim="symmetric",
    )
    quantizer = QuantizerConfig(
        kind="factorized",
        n_q=int(args["n_codebooks"]),
        codebook_size=int(args["codebook_size"]),
        codebook_dim=int(codebook_dim),
        commitment_weight=0.25,  # DAC's training losses: 0.25 commitment, 1.0 codebook
        codebook_weight=1.0,
        quantizer_dropout=float(args["quantizer_dropout"]),
    )
    return AudioCodecConfig(sample_rate=int(args["sample_rate"]), seanet=seanet, quantizer=quantizer)


def dac_config(model: DAC) -> AudioCodecConfig:
    """The AudioCodecConfig of a ``dac.DAC`` model; ValueError when it cannot be expressed."""
    kwargs = {name: getattr(model, name) for name in _DAC_DEFAULTS if name != "quantizer_dropout"}
    kwargs["quantizer_dropout"] = model.quantizer.quantizer_dropout
    return dac_config_from_kwargs(kwargs)


def _state_dict_of(state: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """A plain state dict, or the one inside an official checkpoint {"state_dict", "metadata"}."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        return state["state_dict"]
    return state


def dac_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A DAC state dict (or official checkpoint dict) renamed to AudioCodec's keys."""
    state = _state_dict_of(state)
    # blocks per side: the last conv sits at index n_blocks + 2 (after the final Snake)
    last = {"encoder.block": 0, "decoder.model": 0}
    for key in state:
        match = _SEANET_KEY.match(key)
        if match:
            last[match[1]] = max(last[match[1]], int(match[2]))
    converted = {}
    for key, value in state.items():
        new_key = _rename(key, {side: index - 2 for side, index in last.items()})
        if new_key is None:
            raise ValueError(f"unexpected key in the DAC state dict: {key!r}")
        converted[new_key] = value.detach().clone()
    return converted


def _rename(key: str, n_blocks: dict[str, int]) -> str | None:
    match = _QUANTIZER_KEY.match(key)
    if match:
        level, module, param = match.groups()
        if module == "codebook":
            return f"quantizer.levels.{level}.codebook.{param}" if param == "weight" else None
        module = "project_in" if module == "in_proj" else "project_out"
        return f"quantizer.levels.{level}.{module}.{_WEIGHT_NORM[param]}" if param in _WEIGHT_NORM else None
    match = _SEANET_KEY.match(key)
    if not match:
        return None
    side, index, layer, unit_layer, param = match.groups()
    index, n = int(index), n_blocks[side]
    prefix = "encoder" if side == "encoder.block" else "decoder"
    if layer is None:  # first conv, final Snake, final conv
        position = index if index == 0 else _BLOCK * n + index - n
    elif 1 <= index <= n:
        position = 1 + _BLOCK * (index - 1) + int(layer)
    else:
        return None
    path = f"{prefix}.model.{position}" + ("" if unit_layer is None else f".block.{unit_layer}")
    if param == "alpha":
        return f"{path}.alpha"
    if param not in _WEIGHT_NORM:
        return None
    # the strided layer of a decoder block (index 1 after its Snake) is the transposed conv
    conv = "convtr" if prefix == "decoder" and layer == "1" and unit_layer is None else "conv"
    return f"{path}.{conv}.{_WEIGHT_NORM[param]}"


def convert_dac(model: DAC) -> AudioCodec:
    """An AudioCodec (eval mode) with the weights and codebooks of a ``dac.DAC`` model."""
    codec = AudioCodec(dac_config(model))
    codec.load_state_dict(dac_state_dict(model.state_dict()), strict=True)
    return codec.eval()


def convert_dac_checkpoint(checkpoint: Mapping[str, Any]) -> AudioCodec:
    """An AudioCodec from an official DAC weights file as ``torch.load`` returns it:
    ``{"state_dict": ..., "metadata": {"kwargs": ...}}`` (the ``dac`` package is not needed)."""
    try:
        kwargs = checkpoint["metadata"]["kwargs"]
    except (KeyError, TypeError):
        raise ValueError("a DAC checkpoint is a dict with 'state_dict' and 'metadata': {'kwargs': ...}; "
                         "for a bare state dict use dac_config_from_kwargs and dac_state_dict") from None
    codec = AudioCodec(dac_config_from_kwargs(kwargs))
    codec.load_state_dict(dac_state_dict(checkpoint), strict=True)
    return codec.eval()
