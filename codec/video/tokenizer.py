"""CausalVideoTokenizer: causal 3-d conv encoder -> quantizer -> causal 3-d conv decoder (MAGVIT-v2 / Cosmos).

Shapes (s = spatial_downsample, r = temporal_downsample)::

    video  [B, C, T, H, W] in [0, 1],  T = 1 + k r,  H and W multiples of s
    latent [B, D, T', H/s, W/s],       T' = 1 + k
    codes  [B, Q, T', H/s, W/s]

The first frame is coded alone (latent frame 0), later frames in groups of r: latent frame
i >= 1 holds frames (i - 1) r + 1 ... i r and is decoded back to them. Every layer is causal in
time, so no code or output frame depends on a later frame, and the model streams: frames in,
codes of every completed latent frame out; codes in, their frames out. Other lengths are a
ValueError naming the valid ones (nothing is padded silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..image.output import VisualOutput
from ..quantization import build_quantizer
from ..streaming import StreamingModule, streaming
from ..tokens import QuantizedTokenizer
from .causal_conv import CausalConv3d, CausalUpsample3d
from .config import VideoTokenizerConfig


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over the channels and pixels of each frame of [B, C, T, H, W] (never across time)."""

    def __init__(self, channels: int) -> None:
        super().__init__(math.gcd(8, channels), channels)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] == 0:
            return x
        frames = x.transpose(1, 2).flatten(0, 1)  # [B T, C, H, W]
        return super().forward(frames).unflatten(0, (x.shape[0], x.shape[2])).transpose(1, 2)


class CausalResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))) on [B, C, T, H, W], causal in time."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(FrameGroupNorm(channels), nn.SiLU(), CausalConv3d(channels, channels),
                                   FrameGroupNorm(channels), nn.SiLU(), CausalConv3d(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def build_encoder(config: VideoTokenizerConfig) -> nn.Sequential:
    """[B, C, 1 + k r, H, W] (centred to [-1, 1]) -> latent [B, D, 1 + k, H / s, W / s]."""
    width, blocks = config.width, config.num_blocks
    layers: list[nn.Module] = [CausalConv3d(config.channels, width)]
    for stage in range(config.spatial_stages):
        temporal = stage >= config.spatial_stages - config.temporal_stages  # the last stages
        layers += [CausalResBlock(width) for _ in range(blocks)]
        layers.append(CausalConv3d(width, width, stride=(2 if temporal else 1, 2, 2)))
    layers += [CausalResBlock(width) for _ in range(blocks)]
    layers += [FrameGroupNorm(width), nn.SiLU(), CausalConv3d(width, config.latent_dim)]
    return nn.Sequential(*layers)


def build_decoder(config: VideoTokenizerConfig) -> nn.Sequential:
    """Latent [B, D, 1 + k, h, w] -> [B, C, 1 + k r, h s, w s] (centred: [-1, 1] for the range [0, 1])."""
    width, blocks = config.width, config.num_blocks
    layers: list[nn.Module] = [CausalConv3d(config.latent_dim, width)]
    layers += [CausalResBlock(width) for _ in range(blocks)]
    for stage in range(config.spatial_stages):
        temporal = stage < config.temporal_stages  # the first stages, mirroring the encoder
        layers.append(CausalUpsample3d(width, width, temporal_factor=2 if temporal else 1, spatial_factor=2))
        layers += [CausalResBlock(width) for _ in range(blocks)]
    layers += [FrameGroupNorm(width), nn.SiLU(), CausalConv3d(width, config.channels)]
    return nn.Sequential(*layers)


@dataclass
class _VideoStreamState:
    batch_size: int


class CausalVideoTokenizer(QuantizedTokenizer, StreamingModule[_VideoStreamState]):
    """A causal video tokenizer; ``n_q`` sets the bitrate of ``encode`` (see token_spec)."""

    model_type = "video_tokenizer"
    config_class = VideoTokenizerConfig

    def __init__(self, config: VideoTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        self.quantizer = build_quantizer(config.latent_dim, config.quantizer)
        self.n_q = self.quantizer.n_q

    # --- offline -------------------------------------------------------------------------
    def check_video(self, x: Tensor, whole: bool = True) -> None:
        """ValueError unless x is [B, C, T, H, W] with this model's C, H and W multiples of the spatial
        downsampling and (``whole``) T = 1 + k * temporal_downsample."""
        c, s, r = self.config.channels, self.config.spatial_downsample, self.config.temporal_downsample
        if x.dim() != 5 or x.shape[1] != c:
            raise ValueError(f"expected a video [B, C={c}, T, H, W], got shape {tuple(x.shape)}")
        if x.shape[3] % s or x.shape[4] % s or x.shape[3] == 0 or x.shape[4] == 0:
            raise ValueError(f"height and width must be positive multiples of {s}, got {tuple(x.shape[3:])}")
        if whole and (x.shape[2] < 1 or (x.shape[2] - 1) % r):
            valid = ", ".join(str(1 + k * r) for k in range(4))
            raise ValueError(f"this tokenizer codes videos of 1 + k * {r} frames ({valid}, ...), "
                             f"got {x.shape[2]} frames")

    def encode_latent(self, x: Tensor) -> Tensor:
        """Video [B, C, 1 + k r, H, W] -> continuous latent [B, D, 1 + k, H / s, W / s]."""
        self.check_video(x)
        return self.encoder(x * 2 - 1)

    def decode_latent(self, latent: Tensor) -> Tensor:
        """Latent [B, D, T', h, w] -> video [B, C, 1 + (T' - 1) r, h s, w s] clamped to [0, 1]."""
        return self._reconstruct(latent).clamp(0, 1)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Video [B, C, 1 + k r, H, W] -> codes [B, Q, 1 + k, H / s, W / s]."""
        return self.quantize_latent(self.encode_latent(x), n_q)

    def forward(self, x: Tensor, n_q: int | None = None) -> VisualOutput:
        """Reconstruct x [B, C, T, H, W] (not clamped); in training the quantizer may drop levels per item."""
        q = self.quantizer(self.encode_latent(x), n_q)
        return VisualOutput(reconstruction=self._reconstruct(q.quantized), codes=q.codes, quantizer=q)

    def _reconstruct(self, latent: Tensor) -> Tensor:
        return self.decoder(latent) * 0.5 + 0.5  # the decoder works in [-1, 1]

    # --- streaming -----------------------------------------------------------------------
    def streaming(self, batch_size: int = 1):
        """Context manager: ``with model.streaming(B): model.encode_step(frames) ...``."""
        return streaming(self, batch_size)

    def init_streaming_state(self, batch_size: int) -> _VideoStreamState:
        return _VideoStreamState(batch_size)

    def _check_streaming(self) -> None:
        if self.streaming_state is None:
            raise RuntimeError("call encode_step/decode_step inside `with model.streaming(batch_size):`")

    def encode_step(self, frames: Tensor, n_q: int | None = None) -> Tensor:
        """Frames [B, C, t, H, W] continuing the stream -> codes [B, Q, t', h, w] of the latent frames
        they complete (latent frame 0 with the first frame, then one per r frames)."""
        self._check_streaming()
        self.check_video(frames, whole=False)
        latent = self.encoder(frames * 2 - 1)  # [B, D, t', h, w]
        if latent.shape[2] == 0:
            return torch.zeros(latent.shape[0], n_q or self.n_q, *latent.shape[2:], dtype=torch.long,
                               device=latent.device)
        return self.quantize_latent(latent, n_q)

    def decode_step(self, codes: Tensor) -> Tensor:
        """Codes [B, Q, t', h, w] continuing the stream -> their frames [B, C, t' r, h s, w s] in [0, 1]
        (1 + (t' - 1) r frames in the call that decodes latent frame 0)."""
        self._check_streaming()
        if codes.shape[2] == 0:
            b, _, _, h, w = codes.shape
            s = self.config.spatial_downsample
            return codes.new_zeros(b, self.config.channels, 0, h * s, w * s, dtype=self._device_dtype()[1])
        return self.decode_latent(self.dequantize(codes))
