"""Neural audio codecs and speech tokens."""

from .errors import CodecError
from .token_spec import TokenSpec

__all__ = ["CodecError", "TokenSpec"]
