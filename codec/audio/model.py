"""AudioCodec: SEANet encoder -> quantizer -> SEANet decoder, with one frozen config.

Shapes: audio [B, C, T], latents [B, D, F], codes [B, Q, F], F = ceil(T / hop).
Any input length works: audio is zero-padded to whole frames and decoded audio is trimmed
back, so ``model(x).audio`` has exactly the input's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..quantization import QuantizerConfig, QuantizerOutput, build_quantizer
from ..tokens import Tokenizer, TokenSpec
from .istft_decoder import ISTFTDecoder, ISTFTDecoderConfig
from .seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from ..streaming import StreamingModule, streaming


@dataclass(frozen=True)
class AudioCodecConfig:
    sample_rate: int = 16000
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    # file coding of non-causal models (see segments.py): causal models stream instead
    segment_seconds: float | None = None  # independent segments of this length (EnCodec 48 kHz: 1 s)
    segment_overlap: float = 0.01  # fraction of a segment cross-faded with the next one (< 0.5)
    normalize: bool = False  # code each segment divided by its RMS; the scale is stored with the codes
    decoder: ISTFTDecoderConfig | None = None  # a Vocos-style iSTFT decoder instead of SEANet's (mono only)

    def __post_init__(self) -> None:
        if self.sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise ValueError(f"segment_seconds must be > 0 or None, got {self.segment_seconds}")
        if not 0 <= self.segment_overlap < 0.5:  # the .cdc format allows segments of at most 2 strides
            raise ValueError(f"segment_overlap must be in [0, 0.5), got {self.segment_overlap}")
        if (self.normalize or self.segment_seconds is not None) and self.seanet.causal:
            raise ValueError("segment_seconds and normalize are for non-causal models (causal ones stream)")
        if self.decoder is not None and self.seanet.channels != 1:
            raise ValueError("the iSTFT decoder is for mono models (seanet.channels = 1)")
        if self.decoder is not None and self.hop_length % self.decoder.subframes:
            raise ValueError(f"decoder.subframes ({self.decoder.subframes}) must divide the hop length "
                             f"({self.hop_length})")

    @property
    def hop_length(self) -> int:
        return self.seanet.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def token_spec(self) -> TokenSpec:
        """Tokens with every codebook level in use (the highest bitrate)."""
        q = self.quantizer
        return TokenSpec("audio", q.codebook_sizes, self.frame_rate, latent_dim=self.seanet.dimension,
                         residual=q.residual, fsq_levels=q.fsq_levels if q.kind == "fsq" else ())


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, C, T] reconstruction, same length as the input
    quantizer: QuantizerOutput  # codes, quantized latent, losses, codebook usage


@dataclass
class _CodecStreamState:
    batch_size: int
    num_samples: int = 0  # audio samples received by encode_step so far


class AudioCodec(Tokenizer, StreamingModule[_CodecStreamState]):
    """A neural audio codec; ``n_q`` sets the bitrate of ``encode`` (see token_spec)."""

    model_type = "audio_codec"
    config_class = AudioCodecConfig

    def __init__(self, config: AudioCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config.seanet)
        self.decoder = (SEANetDecoder(config.seanet) if config.decoder is None
                        else ISTFTDecoder(config.seanet.dimension, config.hop_length, config.decoder))
        self.quantizer = build_quantizer(config.seanet.dimension, config.quantizer)
        self.n_q = self.quantizer.n_q

    # --- bitrate -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.seanet.channels

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def max_n_q(self) -> int:
        return self.quantizer.n_q

    @property
    def token_spec(self) -> TokenSpec:
        """Tokens produced by ``encode`` at the current ``n_q``."""
        return self.config.token_spec.with_num_codebooks(self.n_q)

    def set_num_codebooks(self, n: int) -> None:
        if not 1 <= n <= self.max_n_q:
            raise ValueError(f"this model has 1 to {self.max_n_q} codebooks, not {n}")
        self.n_q = n

    # --- offline -------------------------------------------------------------------------
    def _pad_to_frames(self, x: torch.Tensor) -> torch.Tensor:
        frames = max(1, -(-x.shape[-1] // self.hop_length))
        return nn.functional.pad(x, (0, frames * self.hop_length - x.shape[-1]))

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> continuous latent [B, D, ceil(T / hop)] (before quantization).

        The input is zero-padded to whole frames first (as streaming does), except with reflect
        padding, where every conv pads the last partial frame itself (as EnCodec does).
        """
        if self.config.seanet.pad_mode == "reflect" and x.shape[-1] > 0:
            return self.encoder(x)
        return self.encoder(self._pad_to_frames(x))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, F] -> audio [B, C, F * hop]."""
        return self.decoder(z)

    def quantize_latent(self, latent: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latent [B, D, F] -> codes [B, Q, F], Q = n_q or the current ``n_q``."""
        return self.quantizer.encode(latent, n_q or self.n_q)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, Q, F] (any Q <= max) -> quantized latent [B, D, F]."""
        return self.quantizer.decode(codes)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """[B, C, T] -> codes [B, Q, ceil(T / hop)], Q = n_q or the current ``n_q``."""
        return self.quantize_latent(self.encode_latent(x), n_q)

    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """codes [B, Q, F] (any Q <= max) -> audio [B, C, length or F * hop]."""
        audio = self.decode_latent(self.dequantize(codes))
        return audio if length is None else audio[..., :length]

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Reconstruct [B, C, T]; in training the quantizer may drop levels per item."""
        q = self.quantizer(self.encode_latent(x), n_q)
        return CodecOutput(audio=self.decode_latent(q.quantized)[..., : x.shape[-1]], quantizer=q)

    # --- streaming -----------------------------------------------------------------------
    def streaming(self, batch_size: int = 1):
        """Context manager: ``with codec.streaming(B): codec.encode_step(chunk) ...``."""
        return streaming(self, batch_size)

    def init_streaming_state(self, batch_size: int) -> _CodecStreamState:
        return _CodecStreamState(batch_size)

    def _stream_state(self) -> _CodecStreamState:
        if self.streaming_state is None:
            raise RuntimeError("call encode_step/decode_step inside `with codec.streaming(batch_size):`")
        return self.streaming_state

    def encode_step(self, chunk: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Audio chunk [B, C, n] -> the codes [B, Q, f] of every frame completed so far."""
        self._stream_state().num_samples += chunk.shape[-1]
        latent = self.encoder(chunk)
        if latent.shape[-1] == 0:  # no frame completed by this chunk
            return torch.zeros(chunk.shape[0], n_q or self.n_q, 0, dtype=torch.long, device=chunk.device)
        return self.quantize_latent(latent, n_q)

    def encode_flush(self, n_q: int | None = None) -> torch.Tensor:
        """Codes of the last, partial frame, zero-padded as offline encode does: [B, Q, 0 or 1]."""
        state = self._stream_state()
        missing = -state.num_samples % self.hop_length
        if state.num_samples == 0:
            missing = self.hop_length  # offline encode gives one frame even for an empty input
        device, dtype = self._device_dtype()
        if missing == 0:
            return torch.zeros(state.batch_size, n_q or self.n_q, 0, dtype=torch.long, device=device)
        return self.encode_step(torch.zeros(state.batch_size, self.channels, missing, device=device, dtype=dtype), n_q)

    def decode_step(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, Q, f] -> the audio [B, C, n] these frames complete, continuing the stream:
        n = f * hop with a SEANet decoder; an iSTFT decoder holds back the last hop of each call
        (it needs the next frame), which the next call or ``decode_flush`` returns."""
        self._stream_state()
        return self.decoder(self.dequantize(codes))

    def decode_flush(self) -> torch.Tensor:
        """The audio [B, C, n] still held back when the stream ends (n = 0 for a SEANet decoder):
        decode_step outputs followed by this equal offline ``decode``."""
        state = self._stream_state()
        if isinstance(self.decoder, ISTFTDecoder):
            return self.decoder.flush()
        device, dtype = self._device_dtype()
        return torch.zeros(state.batch_size, self.channels, 0, device=device, dtype=dtype)
