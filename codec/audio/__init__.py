"""Audio tokenizers: streamable SEANet codec, checkpoints, the .cdc file format, audio I/O."""

from ..checkpoint import load_checkpoint, model_fingerprint, save_pretrained
from .model import AudioCodec, AudioCodecConfig, CodecOutput
from .registry import from_pretrained, list_models
from .seanet import SEANetConfig
from ..streaming import streaming

__all__ = [
    "AudioCodec", "AudioCodecConfig", "CodecOutput", "SEANetConfig", "from_pretrained", "list_models",
    "load_checkpoint", "model_fingerprint", "save_pretrained", "streaming",
]
