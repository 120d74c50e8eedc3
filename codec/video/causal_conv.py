"""3-d convolutions causal in time, and a causal temporal / spatial upsampling, both streamable.

Padding of a ``CausalConv3d`` with temporal kernel k and stride s, on frames x0 ... x(T-1)::

    time:   |x0 x0 ... x0|x0 x1 ... x(T-1)|        k - 1 copies of the first frame, none after
    space:  (k_h - 1) / 2 and (k_w - 1) / 2 zeros on each side (odd spatial kernels)

The past before the first frame is that frame itself (a video "starts" as a still image), so a
still video gives the same output at every frame. Output frame i sees input frames
i s - (k - 1) ... i s: T = 1 + n s frames give 1 + n output frames, the first of which sees
frame 0 alone. ``k >= s`` so that no frame is skipped.

``CausalUpsample3d`` inverts that: a causal conv to f_t f_s^2 times the channels, then each
frame becomes f_t frames of f_s times the side (depth to time and space). The first input
frame stands for one frame only, so the first f_t - 1 of its frames are dropped: T' frames give
1 + (T' - 1) f_t frames.

Streaming: a conv keeps the input frames its next window still needs (the replicated first
frame before any real frame); the upsampling remembers whether the first frame has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..streaming import StreamingModule


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


@dataclass
class _CausalConvState:
    previous: Tensor | None  # [B, C_in, P, H, W] frames the next window needs; None before the first frame


class CausalConv3d(StreamingModule[_CausalConvState]):
    """Conv3d on [B, C_in, T, H, W] -> [B, C_out, 1 + (T - 1) // s_t, H', W'], causal in time.

    kernel_size and stride: an int or (time, height, width). H' = ceil(H / s_h), W' = ceil(W / s_w).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3,
                 stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        (kt, kh, kw), (st, sh, sw) = _triple(kernel_size), _triple(stride)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd (symmetric padding), got {(kh, kw)}")
        if min(kt, st, sh, sw) < 1 or kt < st:
            raise ValueError(f"need a temporal kernel >= temporal stride >= 1, got kernel {kt}, stride {st}")
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), (st, sh, sw), padding=(0, kh // 2, kw // 2))
        self.kernel_time, self.stride_time = kt, st

    def forward(self, x: Tensor) -> Tensor:
        if self.streaming_state is not None:
            return self._step(x, self.streaming_state)
        if x.shape[2] == 0:
            raise ValueError("a video needs at least one frame")
        past = x[:, :, :1].expand(-1, -1, self.kernel_time - 1, -1, -1)
        return self.conv(torch.cat([past, x], dim=2))

    def init_streaming_state(self, batch_size: int) -> _CausalConvState:
        return _CausalConvState(previous=None)

    def _step(self, chunk: Tensor, state: _CausalConvState) -> Tensor:
        if state.previous is None:
            if chunk.shape[2] == 0:
                return self._empty(chunk)
            state.previous = chunk[:, :, :1].expand(-1, -1, self.kernel_time - 1, -1, -1)
        x = torch.cat([state.previous, chunk], dim=2)
        n_frames = max(0, (x.shape[2] - self.kernel_time) // self.stride_time + 1)
        state.previous = x[:, :, n_frames * self.stride_time:]
        if n_frames == 0:
            return self._empty(chunk)
        return self.conv(x[:, :, : (n_frames - 1) * self.stride_time + self.kernel_time])

    def _empty(self, x: Tensor) -> Tensor:
        """No output frame: [B, C_out, 0, H', W']."""
        (_, sh, sw), (ph, pw) = self.conv.stride, self.conv.padding[1:]
        (_, kh, kw) = self.conv.kernel_size
        h, w = (x.shape[3] + 2 * ph - kh) // sh + 1, (x.shape[4] + 2 * pw - kw) // sw + 1
        return x.new_zeros(x.shape[0], self.conv.out_channels, 0, h, w)


@dataclass
class _UpsampleState:
    started: bool = False  # the first input frame (which gives one output frame) has passed


class CausalUpsample3d(StreamingModule[_UpsampleState]):
    """[B, C_in, T, H, W] -> [B, C_out, 1 + (T - 1) f_t, H f_s, W f_s]: a causal conv then depth to time and space."""

    def __init__(self, in_channels: int, out_channels: int, temporal_factor: int = 2, spatial_factor: int = 2,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if temporal_factor < 1 or spatial_factor < 1:
            raise ValueError(f"upsampling factors must be >= 1, got {temporal_factor} and {spatial_factor}")
        self.temporal_factor, self.spatial_factor = temporal_factor, spatial_factor
        self.out_channels = out_channels
        self.conv = CausalConv3d(in_channels, out_channels * temporal_factor * spatial_factor**2, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # [B, C_out f_t f_s f_s, T, H, W]
        (b, _, t, h, w), ft, fs = y.shape, self.temporal_factor, self.spatial_factor
        y = y.view(b, self.out_channels, ft, fs, fs, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        y = y.reshape(b, self.out_channels, t * ft, h * fs, w * fs)  # frame i -> frames i f_t ... i f_t + f_t - 1
        state = self.streaming_state
        if state is None or (not state.started and t > 0):
            if state is not None:
                state.started = True
            y = y[:, :, ft - 1:]  # the first frame stands for one frame only
        return y

    def init_streaming_state(self, batch_size: int) -> _UpsampleState:
        return _UpsampleState()
