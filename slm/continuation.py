"""Judging spoken continuations, whichever LM made them (discrete tokens or continuous latents).

Protocol: each prompt is the first ``prompt_seconds`` of a held-out utterance, and the LM continues it
up to the utterance's own length. Then
- speaker similarity (GE2E): the prompt against its own continuation, next to the prompt against the
  continuation of a prompt by another speaker (the chance level);
- ASR word error rate of the whole result (prompt + continuation) against the utterance's transcript,
  next to the WER of the codec's resynthesis of the whole utterance (what the recogniser and codec
  allow). The continuation's words are only predictable where the LM has learned the text (e.g. it
  memorised the utterance), so on new sentences the gap to the resynthesis measures how far the LM's
  words stray from what the speaker said, not intelligibility alone;
- distances in the codec's latent space (``latent_distances``): every system's audio is coded by the
  codec's encoder (``encode_latent``), frames normalised per dimension by the prompts' frames; the
  continuation frames are compared with the real frames that follow the prompts (energy distance,
  Frechet distance), next to trivial baselines: the last prompt frame repeated, and a Gaussian with
  the prompts' frames' mean and covariance.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from codec.errors import CodecError

def token_sampling():
    """How a token LM samples continuations in evaluation: top-k 50 with repetition-aware sampling."""
    from .sampling import SamplingConfig

    return SamplingConfig(top_k=50, repetition_window=10)


@dataclass(frozen=True)
class Prompt:
    path: Path
    speaker: str
    text: str | None  # the whole utterance's transcript, when known
    seconds: float  # the whole utterance's duration


@dataclass(frozen=True)
class Continued:
    prompt: Prompt
    audio: torch.Tensor  # [1, T]: the prompt (through the codec), then the continuation
    prompt_samples: int
    resynthesis: torch.Tensor  # [1, T']: the whole utterance through the codec
    original: torch.Tensor  # [1, T']: the whole utterance (mono) at the codec's rate
    sample_rate: int  # the codec's


@dataclass(frozen=True)
class ContinuationScores:
    same: list[float]  # speaker similarity of each prompt to its own continuation
    other: list[float]  # ... to the continuation of a prompt by another speaker (the baseline)
    wer: float | None  # ASR WER of prompt + continuation against the transcripts (None: no transcripts)
    wer_resynthesis: float | None  # ... of the codec's resynthesis of the utterances
    transcripts: list[dict]  # {"prompt", "reference", "continued", "resynthesis"} per transcribed prompt


def choose_prompts(source: Path, count: int, prompt_seconds: float, max_seconds: float) -> tuple[list[Prompt], Counter]:
    """Up to ``count`` utterances of ``source`` (folder or manifest), spread over speakers, each long
    enough for a prompt plus a continuation half as long and short enough for the LM; also the word counts of all
    the source's transcripts (the recogniser's vocabulary)."""
    import soundfile as sf

    from codec.eval.asr import words_of
    from .tokenize import find_sources

    if not prompt_seconds > 0:
        raise CodecError(f"--prompt-seconds must be positive, got {prompt_seconds}.")
    sources = find_sources(source)
    vocabulary = Counter(w for s in sources if s.text for w in words_of(s.text))
    by_speaker: dict[str, list[Prompt]] = {}
    for s in sources:
        try:
            seconds = sf.info(s.path).duration
        except (RuntimeError, OSError):
            raise CodecError(f"{s.path} is not a readable audio file.") from None
        if 1.5 * prompt_seconds <= seconds <= max_seconds:
            speaker = s.speaker or s.path.parent.name
            by_speaker.setdefault(speaker, []).append(Prompt(s.path, speaker, s.text, seconds))
    chosen = [prompts[i] for i in range(count) for _, prompts in sorted(by_speaker.items()) if i < len(prompts)]
    if len({p.speaker for p in chosen[:count]}) < 2:
        raise CodecError(f"Continuations need prompts by at least two speakers in {source} lasting "
                         f"{1.5 * prompt_seconds:g}-{max_seconds:g} s.")
    return chosen[:count], vocabulary


def score_continuations(results: list[Continued], vocabulary: Counter | None = None) -> ContinuationScores:
    """Speaker similarity and (where the prompts have transcripts) ASR word error rates."""
    from codec.eval.metrics import speaker_embedding

    from codec.eval.asr import Recognizer, word_error_rate

    prompt_voice = [speaker_embedding(r.audio[0, :r.prompt_samples], r.sample_rate) for r in results]
    continued_voice = [speaker_embedding(r.audio[0, r.prompt_samples:], r.sample_rate) for r in results]
    cosine = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    same, other = [], []
    for i, r in enumerate(results):
        j = next(k for k in range(1, len(results)) if results[(i + k) % len(results)].prompt.speaker != r.prompt.speaker)
        same.append(cosine(prompt_voice[i], continued_voice[i]))
        other.append(cosine(prompt_voice[i], continued_voice[(i + j) % len(results)]))
    transcribed = [r for r in results if r.prompt.text]
    if not transcribed:
        return ContinuationScores(same, other, None, None, [])
    asr = Recognizer(vocabulary or None)
    rows = [{"prompt": str(r.prompt.path), "reference": r.prompt.text,
             "continued": asr.transcribe(r.audio, r.sample_rate),
             "resynthesis": asr.transcribe(r.resynthesis, r.sample_rate)} for r in transcribed]
    wer = word_error_rate([(row["reference"], row["continued"]) for row in rows])
    ceiling = word_error_rate([(row["reference"], row["resynthesis"]) for row in rows])
    return ContinuationScores(same, other, wer, ceiling, rows)


@dataclass(frozen=True)
class Distances:
    energy: float
    frechet: float


def latent_distances(results: list[Continued], latents_of: Callable[[Tensor], Tensor], frame_rate: float,
                     baselines: bool = False, seed: int = 0) -> dict[str, Distances]:
    """Energy and Frechet distances of the continuations' latent frames to the real frames after the
    prompts; ``latents_of`` codes audio [1, T] at the codec's rate into latents [D, T']. With
    ``baselines``, also those of the last prompt frame repeated and of a Gaussian fitted to the prompts."""
    from .latent_metrics import energy_distance, frechet_distance

    generated, real, prompt_frames, repeated = [], [], [], []
    for r in results:
        p = round(r.prompt_samples * frame_rate / r.sample_rate)
        original = latents_of(r.original)  # [D, T]
        ours = latents_of(r.audio)
        n = min(ours.shape[-1], original.shape[-1]) - p
        if n < 1:
            continue
        generated.append(ours[:, p:p + n].t())
        real.append(original[:, p:p + n].t())
        prompt_frames.append(original[:, :p].t())
        repeated.append(original[:, p - 1:p].t().expand(n, -1))
    if not generated:
        raise CodecError("No continuation is long enough to compare latent frames.")
    prompts = torch.cat(prompt_frames)
    mean, std = prompts.mean(0), prompts.std(0).clamp_min(1e-5)
    normal = lambda frames: (torch.cat(frames) - mean) / std
    reference = normal(real)
    measure = lambda frames: Distances(energy_distance(frames, reference), frechet_distance(frames, reference))
    distances = {"continuation": measure(normal(generated))}
    if baselines:
        distances["last prompt frame repeated"] = measure(normal(repeated))
        fitted = (prompts - mean) / std
        gaussian = torch.distributions.MultivariateNormal(
            fitted.mean(0).double(), covariance_matrix=torch.cov(fitted.t().double()) + 1e-6 * torch.eye(fitted.shape[1]))
        torch.manual_seed(seed)
        distances["Gaussian fitted to the prompts"] = measure(gaussian.sample((reference.shape[0],)).float())
    return distances


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width (normal approximation)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(n - 1, 1))
    return mean, 1.96 * sd / math.sqrt(n)
