"""Well-known pretrained codecs, converted on load from their official checkpoint files.

``load_pretrained("encodec_24khz")`` looks for the official file in the cache
(``$CODEC_HUB_CACHE``, default ``~/.cache/codec/hub``), downloads it there when online (unless
``CODEC_OFFLINE=1``), and converts its weights to an AudioCodec. A local copy of the file can
also be passed as ``--model path/to/encodec_24khz-d7cc33bc.th``. Offline without the file, the
error names the URL and where to put the file.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import CodecError
from ..quantization import QuantizerConfig
from ..files import atomic_write
from .model import AudioCodec, AudioCodecConfig
from .seanet import SEANetConfig


def _encodec_config(sample_rate: int, channels: int, n_q: int) -> Callable[[], AudioCodecConfig]:
    """EnCodec's SEANet (reflect padding, 1x1 shortcuts, 1024-code EMA RVQ): causal with weight norm
    at 24 kHz; at 48 kHz non-causal with time_group_norm, coded in 1 s segments scaled by their RMS."""
    def config() -> AudioCodecConfig:
        causal = sample_rate == 24000
        seanet = SEANetConfig(channels=channels, dimension=128, n_filters=32, ratios=(8, 5, 4, 2),
                              n_residual_layers=1, kernel_size=7, last_kernel_size=7, residual_kernel_size=3,
                              dilation_base=2, compress=2, true_skip=False, lstm_layers=2, activation="elu",
                              norm="weight_norm" if causal else "time_group_norm", causal=causal, pad_mode="reflect")
        quantizer = QuantizerConfig(kind="ema", n_q=n_q, codebook_size=1024, ema_decay=0.99,
                                    kmeans_iters=50, dead_code_threshold=2.0)
        segments = {} if causal else {"segment_seconds": 1.0, "segment_overlap": 0.01, "normalize": True}
        return AudioCodecConfig(sample_rate=sample_rate, seanet=seanet, quantizer=quantizer, **segments)
    return config


def _encodec_weights(state: dict) -> dict[str, torch.Tensor]:
    from .convert.encodec import encodec_state_dict

    return encodec_state_dict(state)


def _dac_config(sample_rate: int, rates: list[int], n_codebooks: int) -> Callable[[], AudioCodecConfig]:
    """DAC's released configurations (its conf/final/*.yml): 64 -> 1536 channels, 1024 x 8-dim codes."""
    def config() -> AudioCodecConfig:
        from .convert.dac import dac_config_from_kwargs

        return dac_config_from_kwargs({"encoder_rates": rates, "decoder_rates": rates[::-1],
                                       "n_codebooks": n_codebooks, "sample_rate": sample_rate})
    return config


def _dac_weights(state: dict) -> dict[str, torch.Tensor]:
    from .convert.dac import dac_state_dict

    return dac_state_dict(state)


@dataclass(frozen=True)
class PretrainedCodec:
    name: str
    url: str
    license: str
    config: Callable[[], AudioCodecConfig]
    convert: Callable[[dict], dict[str, torch.Tensor]]  # official state dict -> AudioCodec state dict

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _dac_entry(sample_rate: int, rates: list[int], n_codebooks: int, release_file: str) -> PretrainedCodec:
    return PretrainedCodec(
        name=f"dac_{sample_rate // 1000}khz",
        url=f"https://github.com/descriptinc/descript-audio-codec/releases/download/{release_file}",
        license="MIT (Descript's DAC weights; Kumar et al. 2023)",
        config=_dac_config(sample_rate, rates, n_codebooks),
        convert=_dac_weights,
    )


def _encodec_entry(sample_rate: int, channels: int, n_q: int, release_file: str) -> PretrainedCodec:
    return PretrainedCodec(
        name=f"encodec_{sample_rate // 1000}khz",
        url=f"https://dl.fbaipublicfiles.com/encodec/v0/{release_file}",
        license="CC-BY-NC-4.0 (Meta's EnCodec weights; Defossez et al. 2022)",
        config=_encodec_config(sample_rate, channels, n_q),
        convert=_encodec_weights,
    )


PRETRAINED: dict[str, PretrainedCodec] = {entry.name: entry for entry in (
    _encodec_entry(24000, 1, 32, "encodec_24khz-d7cc33bc.th"),
    _encodec_entry(48000, 2, 16, "encodec_48khz-7e698e3e.th"),
    _dac_entry(44100, [2, 4, 8, 8], 9, "0.0.1/weights.pth"),
    _dac_entry(24000, [2, 4, 5, 8], 32, "0.0.4/weights_24khz.pth"),
    _dac_entry(16000, [2, 4, 5, 8], 12, "0.0.5/weights_16khz.pth"),
)}


def hub_cache() -> Path:
    return Path(os.environ.get("CODEC_HUB_CACHE", Path.home() / ".cache" / "codec" / "hub"))


def entry_for_file(path: Path) -> PretrainedCodec | None:
    """The registry entry whose official checkpoint file has this name, if any."""
    return next((e for e in PRETRAINED.values() if e.filename == path.name), None)


def _download(entry: PretrainedCodec, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(entry.url, timeout=30) as response, atomic_write(target) as tmp:
            with open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise CodecError(f"Cannot download {entry.name} ({e}); download {entry.url} on a connected machine "
                         f"and put it at {target}, or pass --model with the file's path.") from None


def checkpoint_file(entry: PretrainedCodec) -> Path:
    """The cached official file, downloaded first when allowed."""
    target = hub_cache() / entry.filename
    if target.is_file():
        return target
    if os.environ.get("CODEC_OFFLINE"):
        raise CodecError(f"{entry.name} is not downloaded and CODEC_OFFLINE is set; download {entry.url} "
                         f"and put it at {target}, or pass --model with the file's path.")
    _download(entry, target)
    return target


def load_pretrained(entry: PretrainedCodec, path: Path | None = None) -> AudioCodec:
    """Convert the official checkpoint at ``path`` (default: the cached one) to an AudioCodec."""
    path = path or checkpoint_file(entry)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = AudioCodec(entry.config())
        model.load_state_dict(entry.convert(state), strict=True)
    except (OSError, RuntimeError, KeyError, AttributeError, pickle.UnpicklingError) as e:
        first = " ".join(str(e).split())[:160]
        raise CodecError(f"{path} is not a usable {entry.name} checkpoint ({first}).") from None
    return model.eval()
