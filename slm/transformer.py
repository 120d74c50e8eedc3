"""A pre-norm transformer over step sequences [B, S, D], with a KV cache for generation.

Blocks are x + attn(norm(x)), x + mlp(norm(x)) with rotary position embeddings (RoPE) and
``scaled_dot_product_attention``. ``causal=True`` is a decoder (each step sees the steps before
it); ``causal=False`` is bidirectional (MaskGIT). The KV cache is streaming state
(codec/streaming.py): inside ``with streaming(model, batch_size):`` each forward call appends
its steps to every layer's cache and attends to everything cached, so feeding a sequence
chunk by chunk gives the outputs of one pass over it (tests check this).

Who may attend to whom is the AND of three masks, each optional: causality (``config.causal``), the
key padding ``mask`` [B, S_total] and an ``attn_mask`` [S, S_total] or [B, S, S_total] (True = may
attend; rows are the S new steps, columns every step cached so far), e.g. VAR's block-causal mask
over scales (slm/var.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.streaming import StreamingModule


@dataclass(frozen=True)
class TransformerConfig:
    dim: int = 256
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    causal: bool = True
    rope_base: float = 10000.0
    max_steps: int = 8192  # the longest sequence (KV cache capacity)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.layers < 1 or self.heads < 1 or self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim ({self.dim}) must split into {self.heads} heads of an even size, "
                             f"with at least one layer ({self.layers})")
        if not 0 <= self.dropout < 1 or self.mlp_ratio <= 0 or self.max_steps < 1:
            raise ValueError("dropout must be in [0, 1), mlp_ratio and max_steps positive")


def rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """RoPE: x [B, H, S, d] with step positions [S] -> x with each pair of channels rotated."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)  # [d/2]
    angles = positions.float()[:, None] * freqs[None]  # [S, d/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@dataclass
class KVCache:
    keys: Tensor  # [B, H, capacity, d]
    values: Tensor  # [B, H, capacity, d]
    length: int = 0  # steps cached


class Attention(StreamingModule[KVCache]):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.heads, self.head_dim = config.heads, config.dim // config.heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)

    def init_streaming_state(self, batch_size: int) -> KVCache:
        device, dtype = self._device_dtype()
        shape = (batch_size, self.heads, self.config.max_steps, self.head_dim)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def check_streamable(self) -> None:
        if not self.config.causal:
            raise ValueError("a bidirectional transformer has no KV cache: every step sees every other")

    def forward(self, x: Tensor, mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """x [B, S, D] -> [B, S, D]; mask [B, S] True where a step may be attended to (padding False);
        attn_mask [S, S_total] or [B, S, S_total] True where step i may attend to step j."""
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x [B, H, S, d]
        cache = self.streaming_state
        start = cache.length if cache is not None else 0
        if start + s > self.config.max_steps:
            raise ValueError(f"the sequence exceeds max_steps ({self.config.max_steps})")
        positions = torch.arange(start, start + s, device=x.device)
        q, k = rotate(q, positions, self.config.rope_base), rotate(k, positions, self.config.rope_base)
        if cache is not None:
            cache.keys[:, :, start:start + s] = k
            cache.values[:, :, start:start + s] = v
            cache.length = start + s
            k, v = cache.keys[:, :, :start + s], cache.values[:, :, :start + s]
        allowed = None  # [B, 1, S, S_total] bool, True = may attend
        if self.config.causal:
            allowed = positions[:, None] >= torch.arange(start + s, device=x.device)[None, :]  # [S, S_total]
            allowed = allowed[None, None]
        if mask is not None:
            keys_ok = mask[:, None, None, :]
            allowed = keys_ok if allowed is None else allowed & keys_ok
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool or attn_mask.dim() not in (2, 3) or attn_mask.shape[-2:] != (s, start + s):
                raise ValueError(f"attn_mask must be bool [S, S_total] or [B, S, S_total] with S={s} and "
                                 f"S_total={start + s}, got {attn_mask.dtype} {tuple(attn_mask.shape)}")
            pairs = attn_mask.reshape(-1, 1, s, start + s)  # [1 or B, 1, S, S_total]
            allowed = pairs if allowed is None else allowed & pairs
        dropout = self.config.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)  # [B, H, S, d]
        return self.out(y.transpose(1, 2).reshape(b, s, -1))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = int(config.dim * config.mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.attention = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), mask, attn_mask))
        return x + self.dropout(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """config.layers blocks and a final norm: [B, S, D] -> [B, S, D]."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """x [B, S, D] -> [B, S, D]; ``mask`` and ``attn_mask`` as Attention's."""
        for block in self.blocks:
            x = block(x, mask, attn_mask)
        return self.norm(x)
