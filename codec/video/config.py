"""VideoTokenizerConfig: the frozen description of a causal video tokenizer and its token rate."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..quantization import QuantizerConfig
from ..tokens import TokenSpec


def _default_quantizer() -> QuantizerConfig:
    return QuantizerConfig(kind="ema", n_q=2, codebook_size=256)


@dataclass(frozen=True)
class VideoTokenizerConfig:
    """A causal video tokenizer: T = 1 + k * temporal_downsample frames of image_size x image_size
    pixels give 1 + k latent frames on a grid of (image_size / spatial_downsample)^2 cells.

    frame_rate is that of the videos the model is trained for; it only sets the TokenSpec's rate.
    Every stage of the encoder halves the grid (log2(spatial_downsample) stages); the last
    log2(temporal_downsample) of them also halve the number of frames (after the first one).
    """

    channels: int = 1
    image_size: int = 32  # training side (square); the TokenSpec's grid is image_size / spatial_downsample
    frame_rate: float = 8.0  # frames per second of the training videos
    spatial_downsample: int = 4  # 4, 8 or 16
    temporal_downsample: int = 4  # 1, 2 or 4
    width: int = 32  # channels of every encoder / decoder stage
    latent_dim: int = 16  # D of the latent [B, D, T', h, w]
    num_blocks: int = 1  # residual blocks per stage
    quantizer: QuantizerConfig = field(default_factory=_default_quantizer)

    def __post_init__(self) -> None:
        checks = [
            (self.channels >= 1, f"channels must be >= 1, got {self.channels}"),
            (self.spatial_downsample in (4, 8, 16),
             f"spatial_downsample must be 4, 8 or 16, got {self.spatial_downsample}"),
            (self.temporal_downsample in (1, 2, 4),
             f"temporal_downsample must be 1, 2 or 4, got {self.temporal_downsample}"),
            (self.image_size >= 1 and self.image_size % self.spatial_downsample == 0,
             f"image_size must be a positive multiple of spatial_downsample={self.spatial_downsample}, "
             f"got {self.image_size}"),
            (self.frame_rate > 0, f"frame_rate must be > 0, got {self.frame_rate}"),
            (self.width >= 1, f"width must be >= 1, got {self.width}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.num_blocks >= 0, f"num_blocks must be >= 0, got {self.num_blocks}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def spatial_stages(self) -> int:
        """Encoder stages, each halving H and W."""
        return self.spatial_downsample.bit_length() - 1

    @property
    def temporal_stages(self) -> int:
        """How many of the stages (the last ones) also halve the frames after the first."""
        return self.temporal_downsample.bit_length() - 1

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (h, w) of one latent frame of a training-size video."""
        side = self.image_size // self.spatial_downsample
        return (side, side)

    @property
    def token_frame_rate(self) -> float:
        """Latent frames per second (the first frame of a video is one latent frame on its own)."""
        return self.frame_rate / self.temporal_downsample

    @property
    def token_spec(self) -> TokenSpec:
        """Tokens with every codebook level in use (the highest bitrate)."""
        q = self.quantizer
        return TokenSpec("video", q.codebook_sizes, self.token_frame_rate, grid=self.grid,
                         latent_dim=self.latent_dim, residual=q.residual,
                         fsq_levels=q.fsq_levels if q.kind == "fsq" else ())

    def num_latent_frames(self, num_frames: int) -> int:
        """Latent frames completed by ``num_frames`` >= 1 frames: 1 + (T - 1) // temporal_downsample
        (1 + k for a whole video of 1 + k * temporal_downsample frames)."""
        return 1 + (num_frames - 1) // self.temporal_downsample

    def num_frames(self, num_latent_frames: int) -> int:
        """Frames decoded from ``num_latent_frames`` latent frames: 1 + (T' - 1) * temporal_downsample."""
        return 1 + (num_latent_frames - 1) * self.temporal_downsample
