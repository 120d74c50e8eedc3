"""Every registered audio architecture implements the Tokenizer interface (random weights)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codec.audio import AudioCodec
from codec.audio.presets import PRESETS, tiny
from codec.audio.pretrained import PRETRAINED
from codec.audio.registry import BUNDLED_DIR
from codec.checkpoint import read_checkpoint_info
from codec.quantization import QuantizerConfig

from .tokenizer_conformance import check_tokenizer

ARCHITECTURES = {
    **{f"preset/{name}": make for name, make in PRESETS.items()},
    **{f"pretrained/{name}": entry.config for name, entry in PRETRAINED.items()},
    **{f"bundled/{folder.name}": (lambda folder=folder: read_checkpoint_info(folder).config)
       for folder in sorted(BUNDLED_DIR.iterdir()) if (folder / "config.json").is_file()},
    "tiny_fsq": lambda: dataclasses.replace(tiny(), quantizer=QuantizerConfig(kind="fsq", fsq_levels=(5, 4, 3))),
    "tiny_factorized": lambda: dataclasses.replace(tiny(), quantizer=QuantizerConfig(kind="factorized", n_q=3,
                                                                                   codebook_size=32)),
}


def test_every_pretrained_and_bundled_architecture_is_covered():
    names = set(ARCHITECTURES)
    assert {"pretrained/encodec_24khz", "pretrained/encodec_48khz", "pretrained/dac_16khz", "pretrained/dac_24khz",
            "pretrained/dac_44khz", "bundled/devspeech_16khz", "bundled/devspeech_16khz_v2", "bundled/devspeech_16khz_v3",
            "bundled/devspeech_16khz_v4", "bundled/devspeech_16khz_v5",
            "bundled/devspeech_16khz_v6", "bundled/devspeech_16khz_v7"} <= names


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_audio_architecture_is_a_tokenizer(name):
    torch.manual_seed(0)
    model = AudioCodec(ARCHITECTURES[name]()).eval()
    seconds = 0.15
    x = 0.1 * torch.randn(2, model.channels, round(seconds * model.sample_rate))
    check_tokenizer(model, x, seconds=x.shape[-1] / model.sample_rate)


def test_fsq_levels_are_parallel_and_recorded():
    spec = AudioCodec(dataclasses.replace(tiny(), quantizer=QuantizerConfig(kind="fsq", fsq_levels=(5, 4, 3)))).token_spec
    assert (spec.n_q, spec.codebook_sizes, spec.fsq_levels, spec.residual) == (1, (60,), (5, 4, 3), False)
