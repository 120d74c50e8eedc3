"""Neural audio codecs and speech tokens."""

from .errors import CodecError
from .tokens import TokenSpec

__all__ = ["CodecError", "TokenSpec"]
