"""Converters from reference implementations of pretrained codecs to this toolkit's AudioCodec.

Each converter reads the reference model's configuration and weights (the reference package
is needed only at conversion time) and returns an ``AudioCodec`` that encodes to the same
codes and decodes to the same audio; ``save_pretrained`` then makes it a model folder.
"""

from .dac import convert_dac, convert_dac_checkpoint, dac_config, dac_config_from_kwargs, dac_state_dict
from .encodec import convert_encodec, encodec_config

__all__ = ["convert_dac", "convert_dac_checkpoint", "convert_encodec", "dac_config", "dac_config_from_kwargs",
           "dac_state_dict", "encodec_config"]
