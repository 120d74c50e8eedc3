"""Continuing spoken prompts with a spoken LM: audio -> codes or latents (its codec) -> continuation -> audio.

Prompts are coded by the codec the LM was trained on (checked by fingerprint), mono: a TokenLM
reads codes at its levels, a LatentLM the codec's pre-quantization latents. Several prompts form
one batch: each keeps its last ``prompt_frames`` frames (the shortest prompt's length unless
given; for a LatentLM a multiple of its patch), so that they line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from codec.errors import CodecError

from .latent_model import LatentLM, SamplingOptions
from .model import TokenLM
from .sampling import SamplingConfig


@dataclass
class Continuation:
    prompt: Path
    sequence: torch.Tensor  # [Q or D, P + N]: the prompt's codes or latents, then the generated ones
    audio: torch.Tensor  # [1, samples] at the codec's rate
    prompt_frames: int


def load_lm(checkpoint: str | Path, device: torch.device) -> TokenLM | LatentLM:
    """A token LM or a latent LM from its model folder; CodecError for anything else."""
    from codec.checkpoint import load_checkpoint, read_checkpoint_info

    info = read_checkpoint_info(checkpoint)
    if info.model_type not in (TokenLM.model_type, LatentLM.model_type):
        raise CodecError(f"{checkpoint} holds a {info.model_type} model, not a spoken LM (token_lm or latent_lm).")
    return load_checkpoint(checkpoint, device, model_type=info.model_type)


def load_codec_for(lm: TokenLM | LatentLM, codec: str | None, device: torch.device):
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
def continue_prompts(lm: TokenLM | LatentLM, codec, prompts: list[Path], seconds: float,
                     options: SamplingConfig | SamplingOptions, seed: int = 0,
                     prompt_seconds: float | None = None) -> list[Continuation]:
    """Continue every prompt by ``seconds`` of audio, in one batch."""
    if not seconds > 0:
        raise CodecError(f"--seconds must be positive, got {seconds}.")
    device = next(lm.parameters()).device
    sequences = [encode_for(lm, codec, p) for p in prompts]  # [Q or D, P_i]
    frames = min(x.shape[-1] for x in sequences)
    if prompt_seconds is not None:
        frames = min(frames, _frames_for(lm, prompt_seconds))
    if isinstance(lm, LatentLM):
        frames -= frames % lm.config.patch
    new = max(1, round(seconds * lm.config.frame_rate))
    if frames < 1 or frames + new > lm.max_frames:
        raise CodecError(f"A {frames}-frame prompt plus {new} frames does not fit the LM's {lm.max_frames} frames; "
                         "change the prompt (--prompt-seconds) or --seconds.")
    batch = torch.stack([x[:, x.shape[-1] - frames:] for x in sequences]).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = lm.generate(batch, new, options, generator).cpu()
    return [Continuation(path, item, _audio(codec, lm, item), frames) for path, item in zip(prompts, out)]


@torch.no_grad()
def continue_utterances(lm: TokenLM | LatentLM, codec, prompts: list, prompt_seconds: float,
                        options: SamplingConfig | SamplingOptions, seed: int = 0) -> list:
    """Continue the first ``prompt_seconds`` of each utterance (slm.continuation.Prompt) up to its own
    length, one at a time; slm.continuation.Continued results."""
    from .continuation import Continued

    device = next(lm.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    results = []
    for prompt in prompts:
        sequence = encode_for(lm, codec, prompt.path)  # [Q or D, T]
        frames = _frames_for(lm, prompt_seconds)
        new = sequence.shape[-1] - frames
        if frames < 1 or new < 1 or sequence.shape[-1] > lm.max_frames:
            raise CodecError(f"{prompt.path} ({prompt.seconds:.1f} s) does not fit a {prompt_seconds:g} s prompt "
                             f"and its continuation in the LM's {lm.max_frames} frames.")
        out = lm.generate(sequence[None, :, :frames].to(device), new, options, generator)[0].cpu()
        results.append(Continued(prompt, _audio(codec, lm, out), round(frames * codec.sample_rate / lm.config.frame_rate),
                                 _audio(codec, lm, sequence), codec_audio(codec, prompt.path), codec.sample_rate))
    return results


def _frames_for(lm: TokenLM | LatentLM, seconds: float) -> int:
    """Frames in ``seconds`` (at least one; for a LatentLM whole patches, possibly none)."""
    frames = max(1, round(seconds * lm.config.frame_rate))
    return frames - frames % lm.config.patch if isinstance(lm, LatentLM) else frames


def encode_for(lm: TokenLM | LatentLM, codec, path: Path) -> torch.Tensor:
    """An audio file as the LM models it: codes [Q, T] (as `codec tokenize` codes them) or latents [D, T]."""
    from codec.audio.compress import encode_audio
    from codec.audio.io import read_audio

    if isinstance(lm, LatentLM):
        from .tokenize import encode_latents

        return encode_latents(codec, read_audio(path))
    return encode_audio(codec, read_audio(path), lm.config.n_q, downmix=True).codes[0]


def codec_audio(codec, path: Path) -> torch.Tensor:
    """The audio file as the codec hears it: mono [1, T] at its rate."""
    from codec.audio.io import read_audio, resample

    audio = read_audio(path)
    return resample(audio.samples.mean(0, keepdim=True), audio.sample_rate, codec.sample_rate)


def _audio(codec, lm, sequence: torch.Tensor) -> torch.Tensor:
    """Audio [1, samples] of one item's codes [Q, T] or latents [D, T]."""
    from codec.audio.compress import EncodedAudio, decode_audio

    if isinstance(lm, LatentLM):
        return codec.decode_latent(sequence[None].to(next(codec.parameters()).device))[0].cpu()
    spec = codec.config.token_spec.with_num_codebooks(sequence.shape[0])
    samples = round(sequence.shape[-1] * codec.sample_rate / spec.frame_rate)
    return decode_audio(codec, EncodedAudio(sequence[None], spec, codec.sample_rate, codec.sample_rate, samples)).samples
