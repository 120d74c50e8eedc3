"""EnCodec (facebookresearch/encodec) -> AudioCodec.

The reference SEANet has the same layer order as ours, so weights map by renaming keys::

    encoder.model.0.conv.conv.weight_g            -> encoder.model.0.conv.parametrizations.weight.original0
    encoder.model.0.conv.conv.weight_v            -> encoder.model.0.conv.parametrizations.weight.original1
    decoder.model.3.convtr.convtr.bias            -> decoder.model.3.convtr.bias
    encoder.model.13.lstm.weight_ih_l0            -> (unchanged)
    quantizer.vq.layers.3._codebook.embed         -> quantizer.levels.3.codebook.embedding
    quantizer.vq.layers.3._codebook.embed_avg     -> quantizer.levels.3.codebook.embedding_sum
    quantizer.vq.layers.3._codebook.cluster_size  -> quantizer.levels.3.codebook.cluster_size
    quantizer.vq.layers.3._codebook.inited [1]    -> quantizer.levels.3.codebook.initialized [] (bool)

The codebook state is copied as it is: ``initialized`` is true for every trained EnCodec
codebook, so k-means never runs again, and the EMA statistics let fine-tuning continue
EnCodec's own codebook updates (dead-code restarts included).

Both released models convert exactly: 24 kHz mono (causal, weight norm) and 48 kHz stereo
(non-causal, GroupNorm after every conv, coded in 1 s segments with 1% overlap, each divided by
its RMS; AudioCodecConfig.segment_seconds / segment_overlap / normalize, see segments.py), e.g.::

    encoder.model.0.conv.norm.weight              -> encoder.model.0.norm.weight

Codes are equal at every input length: with reflect padding, AudioCodec.encode lets each conv
pad the last partial frame, as EnCodec does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, get_args

import torch
from torch import nn

from ...quantization import QuantizerConfig
from ..conv import Norm, PadMode
from ..model import AudioCodec, AudioCodecConfig
from ..seanet import SEANetConfig

if TYPE_CHECKING:
    from encodec import EncodecModel

_RENAMES = [
    (re.compile(r"\.conv\.conv\."), ".conv."),
    (re.compile(r"\.convtr\.convtr\."), ".convtr."),
    (re.compile(r"\.(conv|convtr)\.norm\."), ".norm."),  # time_group_norm (48 kHz)
    (re.compile(r"\.weight_g$"), ".parametrizations.weight.original0"),
    (re.compile(r"\.weight_v$"), ".parametrizations.weight.original1"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\."), r"quantizer.levels.\1.codebook."),
    (re.compile(r"codebook\.embed$"), "codebook.embedding"),
    (re.compile(r"codebook\.embed_avg$"), "codebook.embedding_sum"),
    (re.compile(r"codebook\.inited$"), "codebook.initialized"),
]


def unsupported_features(model: EncodecModel) -> list[str]:
    """What this EnCodec model uses that AudioCodec cannot express (empty: it converts exactly)."""
    from encodec.modules import SConv1d, SConvTranspose1d, SLSTM
    from encodec.modules.seanet import SEANetResnetBlock

    missing = []
    convs = [m for m in model.modules() if isinstance(m, (SConv1d, SConvTranspose1d))]
    norms = {m.convtr.norm_type if isinstance(m, SConvTranspose1d) else m.conv.norm_type for m in convs}
    for norm in sorted(norms - set(get_args(Norm))):
        missing.append(f"conv normalisation {norm!r}")
    if (model.normalize or model.segment is not None) and all(m.causal for m in convs):
        missing.append("segments or normalisation in a causal model (AudioCodec streams causal models)")
    if len(norms) > 1 or len({m.causal for m in convs}) > 1:
        missing.append("a mix of normalisations or of causal and non-causal convolutions")
    pad_modes = {m.pad_mode for m in convs if isinstance(m, SConv1d)}
    if len(pad_modes) > 1 or not pad_modes <= set(get_args(PadMode)):
        missing.append(f"conv padding mode(s) {sorted(pad_modes)}")
    if any(isinstance(m, SConvTranspose1d) and m.trim_right_ratio != 1.0 for m in convs):
        missing.append("trim_right_ratio != 1 in causal transposed convolutions")
    layers = (SConv1d, SConvTranspose1d, SLSTM, SEANetResnetBlock, nn.Sequential, nn.Identity)
    acts = [m for seq in model.modules() if isinstance(seq, nn.Sequential) for m in seq if not isinstance(m, layers)]
    if any(not isinstance(m, nn.ELU) or m.alpha != 1.0 for m in acts):
        missing.append("activations other than ELU(alpha=1) (incl. a final decoder activation)")
    if any(not m.skip for m in model.modules() if isinstance(m, SLSTM)):
        missing.append("LSTM without its residual connection")
    if any(not isinstance(layer.project_in, nn.Identity) for layer in model.quantizer.vq.layers):
        missing.append("RVQ codebooks of a lower dimension than the latent (project_in/project_out)")
    return missing


def encodec_config(model: EncodecModel) -> AudioCodecConfig:
    """The AudioCodecConfig of an EnCodec model; ValueError listing what cannot be expressed."""
    from encodec.modules import SLSTM
    from encodec.modules.seanet import SEANetResnetBlock

    missing = unsupported_features(model)
    if missing:
        raise ValueError("this EnCodec model cannot be converted exactly; AudioCodec lacks: " + "; ".join(missing))
    enc, dec = model.encoder, model.decoder
    first, last = enc.model[0], enc.model[-1]
    blocks = [m for m in enc.model if isinstance(m, SEANetResnetBlock)]
    lstms = [m for m in enc.model if isinstance(m, SLSTM)]
    residual_conv = blocks[0].block[1].conv.conv if blocks else None
    seanet = SEANetConfig(
        channels=model.channels,
        dimension=enc.dimension,
        n_filters=enc.n_filters,
        ratios=tuple(int(r) for r in dec.ratios),
        n_residual_layers=enc.n_residual_layers,
        kernel_size=first.conv.conv.kernel_size[0],
        last_kernel_size=last.conv.conv.kernel_size[0],
        residual_kernel_size=residual_conv.kernel_size[0] if residual_conv is not None else 3,
        # dilations are dilation_base ** j: the second block of a resolution shows the base
        dilation_base=blocks[1].block[1].conv.conv.dilation[0] if enc.n_residual_layers > 1 else 2,
        compress=residual_conv.in_channels // residual_conv.out_channels if residual_conv is not None else 2,
        true_skip=bool(blocks) and isinstance(blocks[0].shortcut, nn.Identity),
        lstm_layers=lstms[0].lstm.num_layers if lstms else 0,
        activation="elu",
        norm=first.conv.norm_type,
        causal=first.causal,
        pad_mode=first.pad_mode,
    )
    rvq = model.quantizer
    quantizer = QuantizerConfig(
        kind="ema",
        n_q=rvq.n_q,
        codebook_size=rvq.bins,
        ema_decay=rvq.decay,
        kmeans_iters=rvq.kmeans_iters,
        dead_code_threshold=float(rvq.threshold_ema_dead_code),
        commitment_weight=float(rvq.vq.layers[0].commitment_weight),
    )
    return AudioCodecConfig(sample_rate=model.sample_rate, seanet=seanet, quantizer=quantizer,
                            segment_seconds=model.segment, segment_overlap=model.overlap, normalize=model.normalize)


def encodec_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An EnCodec state dict renamed (and the ``inited`` flags reshaped) to AudioCodec's keys."""
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _RENAMES:
            key = pattern.sub(replacement, key)
        if key.endswith(".codebook.initialized"):
            value = value.reshape(()).bool()
        converted[key] = value.detach().clone()
    return converted


def convert_encodec(model: EncodecModel) -> AudioCodec:
    """An AudioCodec (eval mode) with the weights and codebooks of an EnCodec model."""
    codec = AudioCodec(encodec_config(model))
    codec.load_state_dict(encodec_state_dict(model.state_dict()), strict=True)
    return codec.eval()
