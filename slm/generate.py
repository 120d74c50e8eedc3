"""Continuing spoken prompts with a TokenLM: audio -> codes (its codec) -> continuation -> audio.

Prompts are coded by the codec the LM was trained on (checked by fingerprint), mono, at the
LM's levels. Several prompts form one batch: each keeps its last ``prompt_frames`` frames (the
shortest prompt's length unless given), so that they line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from codec.errors import CodecError

from .model import TokenLM
from .sampling import SamplingConfig


@dataclass
class Continuation:
    prompt: Path
    codes: torch.Tensor  # [Q, P + N]: the prompt's codes, then the generated ones
    audio: torch.Tensor  # [1, samples] at the codec's rate
    prompt_frames: int


def load_lm(checkpoint: str | Path, device: torch.device) -> TokenLM:
    from codec.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, device, model_type="token_lm")


def load_codec_for(lm: TokenLM, codec: str | None, device: torch.device):
    """The codec whose codes the LM models: ``codec`` or the name the LM records; same fingerprint."""
    from codec.audio import from_pretrained, model_fingerprint

    name = codec or lm.config.tokenizer
    try:
        model = from_pretrained(name or None, device)
    except CodecError as e:
        raise CodecError(f"The LM was trained on codes of {lm.config.tokenizer!r}, which cannot be loaded here "
                         f"({str(e).rstrip('.')}); pass --codec with that codec's name or folder.") from None
    if model_fingerprint(model) != lm.config.tokenizer_fingerprint:
        raise CodecError(f"Codec {name!r} (fingerprint {model_fingerprint(model)}) is not the one the LM was trained "
                         f"on ({lm.config.tokenizer!r}, fingerprint {lm.config.tokenizer_fingerprint}).")
    return model


@torch.no_grad()
def continue_prompts(lm: TokenLM, codec, prompts: list[Path], seconds: float, sampling: SamplingConfig,
                     seed: int = 0, prompt_seconds: float | None = None) -> list[Continuation]:
    """Continue every prompt by ``seconds`` of audio, in one batch."""
    from codec.audio.compress import EncodedAudio, decode_audio, encode_audio
    from codec.audio.io import read_audio

    if not seconds > 0:
        raise CodecError(f"--seconds must be positive, got {seconds}.")
    n_q = lm.config.n_q
    codes = [encode_audio(codec, read_audio(p), n_q, downmix=True).codes[0] for p in prompts]  # [Q, P_i]
    frames = min(c.shape[-1] for c in codes)
    if prompt_seconds is not None:
        frames = min(frames, max(1, round(prompt_seconds * lm.config.frame_rate)))
    new = max(1, round(seconds * lm.config.frame_rate))
    limit = lm.config.transformer.max_steps
    if lm.pattern.num_steps(frames + new) > limit:
        raise CodecError(f"A {frames}-frame prompt plus {new} frames exceeds the LM's {limit} steps; "
                         "shorten the prompt (--prompt-seconds) or --seconds.")
    batch = torch.stack([c[:, -frames:] for c in codes]).to(next(lm.parameters()).device)
    generator = torch.Generator(device=batch.device).manual_seed(seed)
    out = lm.generate(batch, new, sampling, generator).cpu()
    spec = codec.config.token_spec.with_num_codebooks(n_q)
    results = []
    for path, item in zip(prompts, out):
        samples = round(item.shape[-1] * codec.sample_rate / spec.frame_rate)
        encoded = EncodedAudio(item[None], spec, codec.sample_rate, codec.sample_rate, samples)
        results.append(Continuation(path, item, decode_audio(codec, encoded).samples, frames))
    return results
