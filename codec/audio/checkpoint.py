"""Model checkpoints: ``model.safetensors`` + ``config.json`` in one folder.

config.json::

    {"format_version": 1, "model_type": "audio_codec",
     "config": {...AudioCodecConfig...}, "metadata": {"license": ..., "description": ...}}

Weights are never unpickled. The model's identity for .cdc files is ``model_fingerprint``:
a hash of its config and weights, so a file made by another model is recognised.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import config_from_dict, config_to_dict
from ..errors import CodecError
from .io import atomic_write, check_writable
from .model import AudioCodec, AudioCodecConfig

FORMAT_VERSION = 1
MODEL_TYPE = "audio_codec"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_pretrained(model: AudioCodec, directory: str | Path, metadata: dict[str, str] | None = None,
                    force: bool = False) -> Path:
    """Write ``directory/config.json`` and ``directory/model.safetensors`` (each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        check_writable(directory / name, force)
    document = {"format_version": FORMAT_VERSION, "model_type": MODEL_TYPE,
                "config": config_to_dict(model.config), "metadata": metadata or {}}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_FILE, force) as tmp:
        save_file(state, str(tmp))
    with atomic_write(directory / CONFIG_FILE, force) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n")
    return directory


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint folder says about itself, read without loading the weights."""

    path: Path
    config: AudioCodecConfig
    metadata: dict[str, Any]
    num_parameters: int


def read_checkpoint_info(directory: str | Path) -> CheckpointInfo:
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CodecError(f"{directory} is not a model folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    try:
        document = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CodecError(f"{config_path} is not valid JSON ({e}).") from None
    if not isinstance(document, dict) or document.get("model_type") != MODEL_TYPE:
        raise CodecError(f"{config_path} does not describe an audio codec.")
    if document.get("format_version") != FORMAT_VERSION:
        raise CodecError(f"{config_path} has format version {document.get('format_version')!r}; "
                         f"this toolkit reads version {FORMAT_VERSION}.")
    try:
        config = config_from_dict(AudioCodecConfig, document.get("config"))
    except ValueError as e:
        raise CodecError(f"{config_path} holds an invalid config: {e}.") from None
    try:
        with safe_open(str(weights_path), "pt") as f:
            n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (SafetensorError, OSError) as e:
        raise CodecError(f"{weights_path} is not a readable safetensors file ({e}).") from None
    return CheckpointInfo(directory, config, dict(document.get("metadata") or {}), n_params)


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> AudioCodec:
    """Build the model from ``config.json`` and load ``model.safetensors`` (eval mode)."""
    info = read_checkpoint_info(directory)
    model = AudioCodec(info.config)
    try:
        state = load_file(str(info.path / WEIGHTS_FILE), device=str(device))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CodecError(f"The weights in {info.path} do not match its config ({first_line}).") from None
    return model.to(device).eval()


def model_fingerprint(model: AudioCodec) -> str:
    """16 hex digits identifying the config and weights (what .cdc files record)."""
    digest = hashlib.sha256(json.dumps(config_to_dict(model.config), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
