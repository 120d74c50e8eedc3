"""Streamable 1-d convolutions with explicit padding, and a streamable LSTM.

Padding of a conv with kernel k, dilation d and stride s (effective kernel k' = (k-1)d + 1):

    padding_total = k' - s

    causal:      |<- padding_total ->|x0 x1 ... x(L-1)|<- extra ->|
    non-causal:  |<- total - total//2 ->|x0 ... x(L-1)|<- total//2 + extra ->|

``extra`` (zero padding on the right) completes the last window so that every input sample
is covered: the output has ceil(L / s) frames. For an input length that is a multiple of s
(the codec pads to a multiple of its hop) extra is 0 and the output has exactly L / s frames.

A transposed conv produces (L - 1) s + k samples; its ``padding_total = k - s`` extra samples
are trimmed (all on the right when causal), giving exactly L s samples. Non-causal transposed
convs split the trim as the convs split their padding (``trim="balanced"``: total - total//2 on
the left, total//2 on the right), or trim ceil(total / 2) from both ends (``trim="symmetric"``,
what ``nn.ConvTranspose1d(padding=ceil(total / 2))`` does, e.g. in DAC): then an odd total gives
L s - 1 samples.

Streaming (causal models with zero padding only): a conv keeps the last input samples that
its next window still needs; a transposed conv keeps the overlapping tail of its output,
which the next chunk's output is added to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..streaming import StreamingModule

Norm = Literal["weight_norm", "time_group_norm", "none"]
PadMode = Literal["constant", "reflect", "replicate"]
ConvTransposeTrim = Literal["balanced", "symmetric"]


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Zeros to add on the right so that the last window is complete."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return max(0, ideal_length - length)


def pad1d(x: torch.Tensor, left: int, right: int, mode: PadMode = "constant") -> torch.Tensor:
    """F.pad on [B, C, T] that also reflects inputs shorter than the padding (zero-extends first)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode)
    length = x.shape[-1]
    grow = max(0, max(left, right) - length + 1)  # reflect needs length > padding
    x = F.pad(x, (0, grow))
    y = F.pad(x, (left, right), mode="reflect")
    return y[..., : y.shape[-1] - grow]


def unpad1d(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Remove ``left`` and ``right`` samples from the time axis of [B, C, T]."""
    return x[..., left : x.shape[-1] - right]


def _normed(module: nn.Module, norm: Norm) -> nn.Module:
    return weight_norm(module) if norm == "weight_norm" else module


def _output_norm(channels: int, norm: Norm) -> nn.Module:
    """GroupNorm(1, C) over channels and time of each item for "time_group_norm" (EnCodec 48 kHz)."""
    return nn.GroupNorm(1, channels) if norm == "time_group_norm" else nn.Identity()


@dataclass
class _ConvState:
    previous: torch.Tensor  # [B, C_in, P] input samples still needed by the next window


class StreamableConv1d(StreamingModule[_ConvState]):
    """Conv1d on [B, C_in, T] -> [B, C_out, ceil(T / stride)] with causal or centred padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        norm: Norm = "none",
        pad_mode: PadMode = "constant",
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = _normed(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation,
                                      groups=groups), norm)
        self.norm = _output_norm(out_channels, norm)
        self.causal, self.pad_mode = causal, pad_mode
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding_total = self.effective_kernel - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming_state is not None:
            return self._step(x, self.streaming_state)
        extra = extra_padding_for_conv1d(x.shape[-1], self.effective_kernel, self.stride, self.padding_total)
        if self.causal and self.pad_mode == "constant" and extra <= self.padding_total:
            # the conv zero-pads both sides itself (no padded copy of x; the same sums, to float
            # rounding), and the outputs that only the right padding beyond ``extra`` made are dropped
            conv = self.conv
            y = F.conv1d(x, conv.weight, conv.bias, self.stride, self.padding_total, conv.dilation, conv.groups)
            n_frames = (x.shape[-1] + self.padding_total + extra - self.effective_kernel) // self.stride + 1
            return self.norm(y[..., :n_frames])
        if self.causal:
            left, right = self.padding_total, extra
        else:
            right = self.padding_total // 2
            left, right = self.padding_total - right, right + extra
        return self.norm(self.conv(pad1d(x, left, right, self.pad_mode)))

    def check_streamable(self) -> None:
        if not self.causal or self.pad_mode != "constant" or not isinstance(self.norm, nn.Identity):
            raise ValueError("only causal convolutions with zero padding and no time_group_norm can stream")

    def init_streaming_state(self, batch_size: int) -> _ConvState:
        device, dtype = self._device_dtype()
        zeros = torch.zeros(batch_size, self.conv.in_channels, self.padding_total, device=device, dtype=dtype)
        return _ConvState(previous=zeros)

    def _step(self, chunk: torch.Tensor, state: _ConvState) -> torch.Tensor:
        x = torch.cat([state.previous, chunk], dim=-1)
        n_frames = max(0, (x.shape[-1] - self.effective_kernel) // self.stride + 1)
        state.previous = x[..., n_frames * self.stride :]
        if n_frames == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        return self.conv(x[..., : (n_frames - 1) * self.stride + self.effective_kernel])


@dataclass
class _ConvTransposeState:
    tail: torch.Tensor  # [B, C_out, kernel - stride] overlap of the last output, bias excluded


class StreamableConvTranspose1d(StreamingModule[_ConvTransposeState]):
    """ConvTranspose1d on [B, C_in, T] -> [B, C_out, T * stride], trimmed causally or centred.

    With ``trim="symmetric"`` (non-causal only) ceil((kernel - stride) / 2) samples are trimmed
    from both ends: T * stride - 1 samples when kernel - stride is odd.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: Norm = "none",
        trim: ConvTransposeTrim = "balanced",
    ) -> None:
        super().__init__()
        if trim not in ("balanced", "symmetric"):
            raise ValueError(f"trim must be 'balanced' or 'symmetric', got {trim!r}")
        if trim == "symmetric" and causal:
            raise ValueError("trim='symmetric' is for non-causal transposed convolutions only")
        self.convtr = _normed(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride), norm)
        self.norm = _output_norm(out_channels, norm)  # before the trim, as in EnCodec
        self.causal, self.stride, self.trim = causal, stride, trim
        self.padding_total = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming_state is not None:
            return self._step(x, self.streaming_state)
        y = self.norm(self.convtr(x))
        if self.trim == "symmetric":
            side = -(-self.padding_total // 2)
            return unpad1d(y, side, side)
        right = self.padding_total if self.causal else self.padding_total // 2
        return unpad1d(y, self.padding_total - right, right)

    def check_streamable(self) -> None:
        if not self.causal or not isinstance(self.norm, nn.Identity):
            raise ValueError("only causal transposed convolutions without time_group_norm can stream")

    def init_streaming_state(self, batch_size: int) -> _ConvTransposeState:
        device, dtype = self._device_dtype()
        zeros = torch.zeros(batch_size, self.convtr.out_channels, self.padding_total, device=device, dtype=dtype)
        return _ConvTransposeState(tail=zeros)

    def _step(self, chunk: torch.Tensor, state: _ConvTransposeState) -> torch.Tensor:
        n_out = chunk.shape[-1] * self.stride
        if n_out == 0:
            return chunk.new_zeros(chunk.shape[0], self.convtr.out_channels, 0)
        y = F.conv_transpose1d(chunk, self.convtr.weight, None, self.stride)  # [B, C, n_out + padding_total]
        y[..., : self.padding_total] += state.tail
        state.tail = y[..., n_out:]
        out = y[..., :n_out]
        return out if self.convtr.bias is None else out + self.convtr.bias[:, None]


@dataclass
class _LSTMState:
    hidden: tuple[torch.Tensor, torch.Tensor] | None  # (h, c), each [layers, B, C]; None before the first frame


class StreamableLSTM(StreamingModule[_LSTMState]):
    """LSTM over [B, C, T] with a residual connection (output = lstm(x) + x)."""

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x
        state = self.streaming_state
        y, hidden = self.lstm(x.permute(2, 0, 1), None if state is None else state.hidden)  # [T, B, C]
        if state is not None:
            state.hidden = hidden
        y = y.permute(1, 2, 0)
        return y + x if self.skip else y

    def init_streaming_state(self, batch_size: int) -> _LSTMState:
        return _LSTMState(hidden=None)
