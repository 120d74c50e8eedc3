"""Audio tokenizers: streamable SEANet codec, checkpoints, the .cdc file format, audio I/O.

The names below are imported on first use, so that reading a .cdc header (bitstream.py) does
not load the model, resampling and audio I/O stacks.
"""

import importlib

_HOMES = {  # name -> the module that defines it
    "AudioCodec": ".model", "AudioCodecConfig": ".model", "CodecOutput": ".model", "SEANetConfig": ".seanet",
    "from_pretrained": ".registry", "list_models": ".registry", "load_checkpoint": "..checkpoint",
    "model_fingerprint": "..checkpoint", "save_pretrained": "..checkpoint", "streaming": "..streaming",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = sorted(_HOMES)
