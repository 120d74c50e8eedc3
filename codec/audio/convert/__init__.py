"""Converters from reference implementations of pretrained codecs to this toolkit's AudioCodec.

Each converter reads the reference model's configuration and weights (the reference package
is needed only at conversion time) and returns an ``AudioCodec`` that encodes to the same
codes and decodes to the same audio; ``save_pretrained`` then makes it a model folder.
"""

from .encodec import convert_encodec, encodec_config

__all__ = ["convert_encodec", "encodec_config"]
