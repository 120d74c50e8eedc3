"""Named models: folders bundled with the package and folders in the user's model directory.

A model name is the name of a checkpoint folder (config.json + model.safetensors) in
``codec/{audio,image,video}/bundled/`` (shipped) or in ``$CODEC_MODELS_DIR`` (default
``~/.cache/codec/models``), or of a well-known codec converted from its official weights
(``pretrained.PRETRAINED``, e.g. ``encodec_24khz``). Anything that is an existing path is
loaded as a path.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CodecError
from ..checkpoint import CheckpointInfo, load_checkpoint, model_class, read_checkpoint_info
from ..tokens import Tokenizer
from .model import AudioCodec
from .pretrained import PRETRAINED, entry_for_file, load_pretrained

BUNDLED_DIR = Path(__file__).parent / "bundled"  # audio model folders shipped with the package
BUNDLED_DIRS = (BUNDLED_DIR, *(Path(__file__).parent.parent / kind / "bundled" for kind in ("image", "video")))
AUDIO_CODEC = "audio_codec"  # the model_type of the folders listed here
DEFAULT_MODEL: str | None = "devspeech_16khz_v7"  # the shipped default (bundled/devspeech_16khz_v7/MODEL_CARD.md)


def user_models_dir() -> Path:
    return Path(os.environ.get("CODEC_MODELS_DIR", Path.home() / ".cache" / "codec" / "models"))


def _model_folders() -> dict[str, Path]:
    """name -> folder; a user folder of the same name overrides a bundled one."""
    found: dict[str, Path] = {}
    for root in (*BUNDLED_DIRS, user_models_dir()):
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / "config.json").is_file():
                    found[folder.name] = folder
    return found


def list_models(model_type: str | None = AUDIO_CODEC) -> list[tuple[str, CheckpointInfo]]:
    """(name, info) for every readable registered model of ``model_type`` (None: any), sorted by name."""
    models = []
    for name, folder in sorted(_model_folders().items()):
        try:
            models.append((name, read_checkpoint_info(folder, model_type)))
        except CodecError:
            continue  # an unreadable folder is not a model; loading it by path explains why
    return models


def resolve_model(name_or_path: str | Path | None) -> Path:
    """The checkpoint folder for a registered name, a path, or (None) the default model."""
    if name_or_path is None:
        if DEFAULT_MODEL is None:
            raise CodecError("No default model is installed yet; pass --model with a model folder or name "
                             "(see `codec models`).")
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    folders = _model_folders()
    if str(name_or_path) in folders:
        return folders[str(name_or_path)]
    known = ", ".join([*folders, *PRETRAINED]) or "none registered"
    raise CodecError(f"No model folder or registered model named {str(name_or_path)!r} (registered: {known}).")


def from_pretrained(name_or_path: str | Path | None = None, device: str | torch.device = "cpu") -> AudioCodec:
    """Load a model by name (a model folder's or a converted codec's, see ``codec models``), by
    folder path, or by the path of an official checkpoint file (None: the default model)."""
    if isinstance(name_or_path, str) and name_or_path in PRETRAINED and name_or_path not in _model_folders() \
            and not Path(name_or_path).exists():
        return load_pretrained(PRETRAINED[name_or_path]).to(device)
    path = resolve_model(name_or_path)
    if path.is_file():
        entry = entry_for_file(path)
        if entry is None:
            known = ", ".join(e.filename for e in PRETRAINED.values())
            raise CodecError(f"{path} is neither a model folder nor a known official checkpoint ({known}).")
        return load_pretrained(entry, path).to(device)
    return load_checkpoint(path, device, AUDIO_CODEC)


def load_tokenizer(name_or_path: str | Path | None = None, device: str | torch.device = "cpu") -> Tokenizer:
    """Like ``from_pretrained``, for a tokenizer of any modality (audio codec, image or video tokenizer)."""
    path = None if name_or_path is None or name_or_path in PRETRAINED else resolve_model(name_or_path)
    if path is None or path.is_file():
        return from_pretrained(name_or_path, device)
    info = read_checkpoint_info(path)
    if not issubclass(model_class(info.model_type), Tokenizer):
        raise CodecError(f"{path} holds a {info.model_type}, not a tokenizer (an audio codec, image or video "
                         "tokenizer).")
    return load_checkpoint(path, device)
