"""Preparing an AudioCodec for inference: output-preserving speed-ups and reduced precision.

``prepare_for_inference(model)`` changes the model in place and returns it:

- weight-norm folding: every conv's ``weight = g * v / |v|`` is computed once, here, instead of
  at every forward call; the same float operations, so codes and audio stay bit-identical;
- eval mode and no gradients (parameters no longer require grad);
- ``precision="bfloat16"``: encoder and decoder run in bfloat16 (their input is cast to
  bfloat16 and their output back to float32); the quantizer's nearest-code search stays float32;
- ``precision="int8"``: dynamic int8 quantization of the LSTMs and Linear layers (int8 weights,
  activations quantized on the fly, per call: streamed output then differs slightly from
  offline); convolutions stay float32. CPU only; torch's quantized tensors are deprecated
  (in favour of torchao) but still run in this torch;
- ``compile=True``: ``torch.compile`` of the encoder and decoder (parameter names unchanged).

Reduced precision changes the output (the benchmark suite measures by how much, in PESQ).

Call it *after* ``model_fingerprint``: folding renames the conv weights in the state dict
(``conv.parametrizations.weight.original0/1`` -> ``conv.weight``), so a prepared model hashes
differently and is not a checkpoint of its config. Prepare a model loaded or built on its own:
a ``copy.deepcopy`` of a weight-normed module shares its parametrized classes with the original
(a PyTorch limitation), and folding one would break the other.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from .model import AudioCodec

Precision = Literal["float32", "bfloat16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("float32", "bfloat16", "int8")


def fold_parametrizations(model: nn.Module) -> int:
    """Replace every parametrized weight of ``model`` by its current value; returns how many."""
    folded = 0
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable outside inference mode too
        for module in list(model.modules()):
            if parametrize.is_parametrized(module):
                for name in list(module.parametrizations):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                    folded += 1
    return folded


def _cast_input(dtype: torch.dtype):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(dtype), *args[1:])
    return hook


def _float32_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def _run_in_bfloat16(module: nn.Module) -> None:
    """``module`` computes in bfloat16 and still takes and gives float32 tensors."""
    module.to(torch.bfloat16)
    module.register_forward_pre_hook(_cast_input(torch.bfloat16))
    module.register_forward_hook(_float32_output)


def _quantize_int8(model: AudioCodec) -> None:
    with warnings.catch_warnings():
        # torch's own int8 tensors are deprecated (for torchao); they still run, so say it once, in the docs
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8, inplace=True)


def prepare_for_inference(model: AudioCodec, *, fold_weight_norm: bool = True, precision: Precision = "float32",
                          compile: bool = False) -> AudioCodec:
    """``model`` (changed in place) ready for encoding and decoding; see the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model.eval()
    if fold_weight_norm:
        fold_parametrizations(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if precision == "bfloat16":
        _run_in_bfloat16(model.encoder)
        _run_in_bfloat16(model.decoder)
    elif precision == "int8":
        _quantize_int8(model)
    if compile:
        model.encoder.compile()
        model.decoder.compile()
    return model
