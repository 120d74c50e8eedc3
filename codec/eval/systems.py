"""Neural codecs as evaluation systems, with the same ``code(audio) -> CodedClip`` as the baselines.

The compressed size is that of the real ``.cdc`` file the CLI would write (header included),
so the actual bitrate in the report is what users get on disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..audio.bitstream import CdcHeader, encode_cdc
from ..audio.compress import decode_audio, encode_audio
from ..audio.io import Audio, to_channels
from ..audio.model import AudioCodec
from .baselines import CodedClip


@dataclass
class NeuralSystem:
    """One model at one number of codebooks."""

    model: AudioCodec
    model_name: str
    fingerprint: str
    n_q: int

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def nominal_kbps(self) -> float:
        return self.model.config.token_spec.with_num_codebooks(self.n_q).kbps

    @property
    def label(self) -> str:
        return f"{self.model_name} {self.nominal_kbps:g} kbps"

    def code(self, audio: Audio) -> CodedClip:
        mono = Audio(to_channels(audio.samples, 1), audio.sample_rate)
        start = time.perf_counter()
        encoded = encode_audio(self.model, mono, self.n_q)
        size = len(encode_cdc(CdcHeader.for_encoded(encoded, self.model_name, self.fingerprint), encoded.codes))
        encode_end = time.perf_counter()
        decoded = decode_audio(self.model, encoded)
        return CodedClip(audio=decoded, num_bytes=size, encode_seconds=encode_end - start,
                         decode_seconds=time.perf_counter() - encode_end)


def neural_systems(model: AudioCodec, model_name: str, fingerprint: str,
                   bandwidths: list[float] | None) -> list[NeuralSystem]:
    """The model at each requested bandwidth (kbps; default: every bitrate it offers)."""
    if bandwidths:
        levels = sorted({model.config.token_spec.n_q_for_kbps(kbps) for kbps in bandwidths})
    else:
        levels = list(range(1, model.max_n_q + 1))
    return [NeuralSystem(model, model_name, fingerprint, n) for n in levels]
