"""Model folders for every tokenizer: ``config.json`` + ``model.safetensors``.

config.json::

    {"format_version": 2, "model_type": "audio_codec",
     "config": {...the model's frozen config...}, "metadata": {"license": ..., "description": ...}}

A model class names its ``model_type`` and ``config_class``; ``MODEL_TYPES`` says which
module defines each type, so loading imports only what the folder needs. Weights are never
unpickled. Version 1 folders (a quantizer's level count named ``num_codebooks``, now ``n_q``)
still load.

The model's identity for .cdc files is ``model_fingerprint``, a hash of its config and
weights. It hashes the config under its version-1 key names, so a model keeps the
fingerprint it had before the rename and files written then still decode.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .config import config_from_dict, config_to_dict
from .errors import CodecError
from .files import atomic_write, check_writable

FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES = {  # model_type -> "module:class" of the model
    "audio_codec": "codec.audio.model:AudioCodec",
    "token_lm": "slm.model:TokenLM",
    "latent_lm": "slm.latent_model:LatentLM",
    "image_tokenizer": "codec.image.conv_tokenizer:ConvImageTokenizer",
    "titok_tokenizer": "codec.image.titok:TiTokTokenizer",
    "multiscale_tokenizer": "codec.image.multiscale:MultiScaleTokenizer",
    "video_tokenizer": "codec.video.tokenizer:CausalVideoTokenizer",
    "image_token_lm": "slm.image_lm:ImageTokenLM",
    "next_scale_lm": "slm.var:NextScaleLM",
    "image_flow_lm": "slm.image_flow:ImageFlowLM",
}
_V1_NAMES = {"n_q": "num_codebooks"}  # keys renamed in format version 2 (inside "quantizer" sections)
_LATER_DEFAULTS = {  # config keys added after models were fingerprinted, per section: left out at their default
    "quantizer": {"lfq_bits": 10, "entropy_weight": 0.1, "restart_dead_codes": False},
    "decoder": {"subframes": 1},
}


def model_class(model_type: str) -> type[nn.Module]:
    """The class registered for ``model_type``; CodecError if there is none."""
    if model_type not in MODEL_TYPES:
        raise CodecError(f"Unknown model type {model_type!r} (known: {', '.join(MODEL_TYPES)}).")
    module, name = MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def save_pretrained(model: nn.Module, directory: str | Path, metadata: dict[str, str] | None = None,
                    force: bool = False) -> Path:
    """Write ``directory/config.json`` and ``directory/model.safetensors`` (each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        check_writable(directory / name, force)
    document = {"format_version": FORMAT_VERSION, "model_type": model.model_type,
                "config": config_to_dict(model.config), "metadata": metadata or {}}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_FILE, force) as tmp:
        save_file(state, str(tmp))
    with atomic_write(directory / CONFIG_FILE, force) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n")
    return directory


@dataclass(frozen=True)
class CheckpointInfo:
    """What a model folder says about itself, read without loading the weights."""

    path: Path
    model_type: str
    config: Any  # the model class's config_class
    metadata: dict[str, Any]
    num_parameters: int


def _rename_keys(data: Any, names: dict[str, str], inside: str = "quantizer") -> Any:
    """``data`` with the keys of every ``inside`` section renamed by ``names``."""
    if not isinstance(data, dict):
        return data
    return {key: ({names.get(k, k): v for k, v in value.items()} if key == inside and isinstance(value, dict)
                  else _rename_keys(value, names, inside))
            for key, value in data.items()}


def read_checkpoint_info(directory: str | Path, model_type: str | None = None) -> CheckpointInfo:
    """Read and validate ``config.json`` (of ``model_type`` if given) and count the weights."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CodecError(f"{directory} is not a model folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    try:
        document = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CodecError(f"{config_path} is not valid JSON ({' '.join(str(e).split())}).") from None
    if not isinstance(document, dict) or document.get("model_type") not in MODEL_TYPES:
        raise CodecError(f"{config_path} does not describe a model this toolkit knows "
                         f"(model_type must be one of {', '.join(MODEL_TYPES)}).")
    found_type = document["model_type"]
    if model_type is not None and found_type != model_type:
        raise CodecError(f"{config_path} describes a {found_type}, not a {model_type}.")
    version = document.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise CodecError(f"{config_path} has format version {version!r}; this toolkit reads versions 1 and "
                         f"{FORMAT_VERSION}.")
    config_data = document.get("config")
    if version == 1:
        config_data = _rename_keys(config_data, {v: k for k, v in _V1_NAMES.items()})
    try:
        config = config_from_dict(model_class(found_type).config_class, config_data)
    except ValueError as e:
        raise CodecError(f"{config_path} holds an invalid config: {e}.") from None
    try:
        with safe_open(str(weights_path), "pt") as f:
            n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (SafetensorError, OSError) as e:
        raise CodecError(f"{weights_path} is not a readable safetensors file ({e}).") from None
    return CheckpointInfo(directory, found_type, config, dict(document.get("metadata") or {}), n_params)


def _without_defaults(data: Any, later: dict[str, dict[str, Any]]) -> Any:
    """``data`` without the keys of every section named in ``later`` that hold their value there."""
    if not isinstance(data, dict):
        return data
    return {key: ({k: v for k, v in value.items() if k not in later[key] or later[key][k] != v}
                  if key in later and isinstance(value, dict) else _without_defaults(value, later))
            for key, value in data.items()}


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu",
                    model_type: str | None = None) -> nn.Module:
    """Build the model from ``config.json`` and load ``model.safetensors`` (eval mode)."""
    info = read_checkpoint_info(directory, model_type)
    model = model_class(info.model_type)(info.config)
    try:
        state = load_file(str(info.path / WEIGHTS_FILE), device=str(device))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CodecError(f"The weights in {info.path} do not match its config ({first_line}).") from None
    return model.to(device).eval()


def model_fingerprint(model: nn.Module) -> str:
    """16 hex digits identifying the config and weights (what .cdc files record)."""
    config = _without_defaults(_rename_keys(config_to_dict(model.config), _V1_NAMES), _LATER_DEFAULTS)
    if getattr(model, "model_type", "") == "audio_codec" and config.get("decoder", 0) is None:  # a later key
        del config["decoder"]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
