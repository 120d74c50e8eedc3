"""What a TokenLM learned: held-out likelihood against n-gram baselines, and minimal-pair judgements.

Likelihood is reported per codebook level in bits per token, and summed over levels in bits per
second, next to a unigram and a bigram model of each level estimated on the training shards
(add-one smoothing; the bigram interpolated with the unigram), on the same held-out tokens.

Utterances longer than the LM's context (``TokenLM.max_frames``) are scored on their first
``max_frames`` frames.

Minimal pairs (ZeroSpeech 2021 sWUGGY / sBLIMP protocol): the LM prefers the member with the
higher summed log-probability of its tokens; accuracy is reported with a 95% Wilson interval
against chance (50%). Pairs come from `codec slm corpus` (pairs.jsonl) or from a ZeroSpeech-style
folder: ``<dir>/gold.csv`` with columns ``id``, ``filename``, ``correct`` (1 or 0; two rows per
id) and the audio in ``<dir>/<filename>.wav``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from codec.errors import CodecError

from .continuation import ContinuationScores, mean_ci
from .model import TokenLM

LOG2E = 1 / math.log(2)


@dataclass(frozen=True)
class Pair:
    kind: str
    good: Path
    bad: Path


@dataclass(frozen=True)
class Accuracy:
    kind: str
    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else math.nan

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """95% Wilson score interval."""
        n, p = self.total, self.value
        if not n:
            return math.nan, math.nan
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half


@torch.no_grad()
def lm_bits(lm: TokenLM, utterances: list[torch.Tensor]) -> torch.Tensor:
    """Bits per token of each level [Q] over utterances' codes [Q, T_i] (each scored from its start)."""
    lm.eval()
    device = next(lm.parameters()).device
    nats, counts = torch.zeros(lm.config.n_q), torch.zeros(lm.config.n_q)
    for codes in utterances:
        out = lm(codes[: lm.config.n_q, : lm.max_frames][None].to(device))
        nats += (out.level_losses * out.level_counts).cpu()
        counts += out.level_counts.cpu()
    return nats / counts.clamp_min(1) * LOG2E


class NgramModel:
    """A unigram (order 1) or bigram (order 2) model of each codebook level, estimated on training codes:
    add-one smoothing, the bigram mixed half and half with the unigram."""

    def __init__(self, train: list[torch.Tensor], sizes: tuple[int, ...], order: int) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.unigrams, self.bigrams = [], []
        for level, k in enumerate(sizes):
            unigram = torch.ones(k, dtype=torch.float64)
            bigram = torch.ones(k, k, dtype=torch.float64) if order == 2 else None
            for codes in train:
                c = codes[level]
                unigram += torch.bincount(c, minlength=k)
                if bigram is not None and len(c) > 1:
                    bigram.view(-1).index_add_(0, c[:-1] * k + c[1:], torch.ones(len(c) - 1, dtype=torch.float64))
            self.unigrams.append(unigram / unigram.sum())
            self.bigrams.append(None if bigram is None else bigram / bigram.sum(1, keepdim=True))

    def token_bits(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        """-log2 p of each token [T] of one level's codes [T]."""
        p = self.unigrams[level][codes]
        bigram = self.bigrams[level]
        if bigram is not None and len(codes) > 1:
            p = torch.cat([p[:1], 0.5 * bigram[codes[:-1], codes[1:]] + 0.5 * p[1:]])
        return -p.log2()

    def bits(self, test: list[torch.Tensor]) -> torch.Tensor:
        """Bits per token of each level [Q] over utterances' codes [Q, T_i]."""
        levels = range(len(self.unigrams))
        totals = [sum(float(self.token_bits(c[q], q).sum()) for c in test) for q in levels]
        count = max(sum(c.shape[-1] for c in test), 1)
        return torch.tensor([t / count for t in totals])

    def log_probability(self, codes: torch.Tensor) -> float:
        """Summed log-probability (nats) of codes [Q, T]."""
        return -sum(float(self.token_bits(codes[q], q).sum()) for q in range(len(self.unigrams))) / LOG2E


def ngram_bits(train: list[torch.Tensor], test: list[torch.Tensor], sizes: tuple[int, ...],
               order: int) -> torch.Tensor:
    """Bits per token of each level [Q] of ``test`` under an ``NgramModel`` of ``train``."""
    return NgramModel(train, sizes, order).bits(test)


def read_pairs(source: Path) -> list[Pair]:
    """Minimal pairs from pairs.jsonl (`codec slm corpus`) or a ZeroSpeech-style folder with gold.csv."""
    if source.is_dir():
        gold = source / "gold.csv"
        if not gold.is_file():
            raise CodecError(f"{source} has no gold.csv (ZeroSpeech layout: id, filename, correct).")
        groups: dict[str, dict[int, Path]] = defaultdict(dict)
        try:
            with gold.open(newline="") as f:
                reader = csv.DictReader(f)
                if not {"id", "filename", "correct"} <= set(reader.fieldnames or ()):
                    raise KeyError("id, filename, correct")
                for row in reader:
                    groups[row["id"]][int(row["correct"])] = source / f"{row['filename']}.wav"
        except (KeyError, ValueError, csv.Error, UnicodeDecodeError) as e:
            raise CodecError(f"{gold} is not a gold file with id, filename and correct columns ({e}).") from None
        kind = source.parent.name if source.parent.name in ("lexical", "syntactic") else source.name
        pairs = [Pair(kind, g[1], g[0]) for g in groups.values() if set(g) == {0, 1}]
    else:
        try:
            rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
            pairs = [Pair(r["kind"], source.parent / r["good_path"], source.parent / r["bad_path"]) for r in rows]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CodecError(f"{source} is not a pairs.jsonl file ({e}).") from None
    if not pairs:
        raise CodecError(f"No minimal pairs found in {source}.")
    return pairs


@torch.no_grad()
def log_probability(lm: TokenLM, codes: torch.Tensor) -> float:
    """Summed log-probability (nats) of codes [Q, T] under the LM."""
    out = lm(codes[: lm.config.n_q, : lm.max_frames][None].to(next(lm.parameters()).device))
    return -float((out.level_losses * out.level_counts).sum())


def judge_pairs(lm: TokenLM, codec, pairs: list[Pair], reference: NgramModel | None = None) -> list[Accuracy]:
    """Accuracy of preferring the good member, per kind of pair. With a ``reference`` n-gram model, also
    the accuracy of the score log p_LM - log p_reference (kind "<kind>, LM - n-gram"): what the LM adds
    to the local statistics of the tokens, which depend on the voice more than on the words."""
    from codec.audio.compress import encode_audio
    from codec.audio.io import read_audio

    lm.eval()
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair in pairs:
        codes = [encode_audio(codec, read_audio(p), lm.config.n_q, downmix=True).codes[0][: lm.config.n_q, : lm.max_frames]
                 for p in (pair.good, pair.bad)]
        scores = [log_probability(lm, c) for c in codes]
        judged = {pair.kind: scores[0] > scores[1]}
        if reference is not None:
            normalised = [s - reference.log_probability(c) for s, c in zip(scores, codes)]
            judged[f"{pair.kind}, LM - n-gram"] = normalised[0] > normalised[1]
        for kind, correct in judged.items():
            tallies[kind][0] += correct
            tallies[kind][1] += 1
    return [Accuracy(kind, c, n) for kind, (c, n) in sorted(tallies.items())]


def write_report(out: Path, bits: dict[str, torch.Tensor], frame_rate: float, accuracies: list[Accuracy],
                 continuation: ContinuationScores | None = None, force: bool = False) -> str:
    """results.json / results.csv / results.md and plot.png in ``out``; returns the markdown table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    rows = [{"model": name, **{f"level_{q}": float(b) for q, b in enumerate(levels)},
             "bits_per_token": float(levels.mean()), "bits_per_second": float(levels.sum()) * frame_rate}
            for name, levels in bits.items()]
    judged = [{"kind": a.kind, "accuracy": a.value, "ci_low": a.interval()[0], "ci_high": a.interval()[1],
               "pairs": a.total} for a in accuracies]
    lines = ["| model | bits per token | bits per second |", "|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['bits_per_token']:.3f} | {r['bits_per_second']:.0f} |" for r in rows]
    if judged:
        lines += ["", "| minimal pairs | accuracy | 95% CI | pairs |", "|---|---:|---:|---:|"]
        lines += [f"| {j['kind']} | {100 * j['accuracy']:.1f}% | {100 * j['ci_low']:.1f}-{100 * j['ci_high']:.1f}% | "
                  f"{j['pairs']} |" for j in judged]
    document = {"likelihood": rows, "minimal_pairs": judged}
    if continuation is not None:
        lines += ["", *continuation_table(continuation)]
        document["continuations"] = continuation_document(continuation)
    table = "\n".join(lines) + "\n"
    with atomic_write(out / "results.json", force) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
    with atomic_write(out / "results.md", force) as tmp:
        tmp.write_text(table)
    with atomic_write(out / "results.csv", force) as tmp:
        keys = list(rows[0])
        tmp.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    fig, axes = plt.subplots(1, 2 if judged else 1, figsize=(11 if judged else 6, 4), squeeze=False)
    ax = axes[0, 0]
    levels = range(len(next(iter(bits.values()))))
    width = 0.8 / len(bits)
    for i, (name, values) in enumerate(bits.items()):
        ax.bar([q + i * width for q in levels], values.tolist(), width, label=name)
    ax.set_xticks([q + width * (len(bits) - 1) / 2 for q in levels], [str(q) for q in levels])
    ax.set(xlabel="codebook level", ylabel="bits per token (held out)", title="likelihood per level")
    ax.legend()
    if judged:
        ax = axes[0, 1]
        ax.bar([j["kind"] for j in judged], [100 * j["accuracy"] for j in judged],
               yerr=[[100 * (j["accuracy"] - j["ci_low"]) for j in judged],
                     [100 * (j["ci_high"] - j["accuracy"]) for j in judged]], capsize=6)
        ax.axhline(50, color="grey", linestyle="--", label="chance")
        ax.set(ylim=(0, 100), ylabel="accuracy (%)", title="minimal pairs")
        ax.legend()
    fig.tight_layout()
    with atomic_write(out / "plot.png", force) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return table


def continuation_table(scores: ContinuationScores) -> list[str]:
    """Markdown lines: speaker similarity and, with transcripts, ASR word error rates."""
    n = len(scores.same)
    lines = ["| continuation vs | speaker similarity (GE2E) | prompts |", "|---|---:|---:|"]
    for name, values in (("own prompt", scores.same), ("another speaker's prompt", scores.other)):
        m, h = mean_ci(values)
        lines.append(f"| {name} | {m:.3f} ± {h:.3f} | {n} |")
    if scores.wer is not None:
        lines += ["", "| ASR (pocketsphinx) vs transcript | word error rate | prompts |", "|---|---:|---:|",
                  f"| prompt + continuation | {100 * scores.wer:.1f}% | {len(scores.transcripts)} |",
                  f"| codec resynthesis of the utterance | {100 * scores.wer_resynthesis:.1f}% | "
                  f"{len(scores.transcripts)} |"]
    return lines


def continuation_document(scores: ContinuationScores) -> dict:
    same, other = mean_ci(scores.same), mean_ci(scores.other)
    return {"speaker_similarity": {"own_prompt": {"mean": same[0], "ci95": same[1]},
                                   "other_speaker": {"mean": other[0], "ci95": other[1]}},
            "wer": scores.wer, "wer_resynthesis": scores.wer_resynthesis, "transcripts": scores.transcripts}
