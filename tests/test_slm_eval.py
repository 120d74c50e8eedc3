"""LM evaluation: n-gram baselines, minimal-pair scoring in both layouts, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

import cli
from codec.eval.asr import word_errors
from slm.eval import Accuracy, NgramModel, ngram_bits, read_pairs

from .test_slm_train import _shards, quick_lm

runner = CliRunner()


def test_ngram_baselines_on_known_sequences():
    alternating = [torch.tensor([[0, 1] * 200])]
    uni = ngram_bits(alternating, alternating, (2,), 1)
    bi = ngram_bits(alternating, alternating, (2,), 2)
    assert uni[0] == pytest.approx(1.0, abs=1e-3)  # two equally frequent codes
    assert bi[0] < 0.6  # the next code is predictable from the last (mixed half with the unigram: ~0.58 bits)
    constant = [torch.zeros(1, 10000, dtype=torch.long)]  # add-one smoothing: p(0) = 10001 / 11024
    assert ngram_bits(constant, constant, (1024,), 1)[0] < 0.2


def test_wilson_interval():
    low, high = Accuracy("lexical", 75, 100).interval()
    assert (round(low, 3), round(high, 3)) == (0.657, 0.825)
    assert math.isnan(Accuracy("x", 0, 0).value)


def test_zerospeech_gold_layout(tmp_path):
    folder = tmp_path / "lexical" / "dev"
    folder.mkdir(parents=True)
    (folder / "gold.csv").write_text("id,filename,word,correct\n1,aa,dog,1\n1,ab,dug,0\n2,ba,cat,1\n2,bb,cet,0\n3,ca,x,1\n")
    pairs = read_pairs(folder)
    assert [(p.kind, p.good.name, p.bad.name) for p in pairs] == [("lexical", "aa.wav", "ab.wav"),
                                                                  ("lexical", "ba.wav", "bb.wav")]  # id 3: no pair
    (folder / "gold.csv").write_text("name,label\n")
    with pytest.raises(Exception, match="gold file"):
        read_pairs(folder)


def test_slm_eval_report(tmp_path, tiny_model_dir):
    shards = _shards(tmp_path, tiny_model_dir)
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "token_lm", "steps": 40, "batch_size": 4, "valid_every": 40, "checkpoint_every": 40,
        "optim": {"lr": 3e-3, "schedule": "constant"},
        "model": {"transformer": {"dim": 32, "layers": 2, "heads": 2, "max_steps": 64}},
        "data": {"shards": str(shards), "valid_utterances": 2, "crop_frames": 40}}))
    assert runner.invoke(cli.app, ["slm", "train", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    # pairs: a tone like the training ones (good) against noise (bad)
    t = np.arange(6400) / 16000
    sf.write(tmp_path / "good.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    sf.write(tmp_path / "bad.wav", (0.3 * np.random.default_rng(0).standard_normal(6400)).astype(np.float32), 16000)
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"kind": "tones", "good": "", "bad": "", "good_path": "good.wav",
                                                      "bad_path": "bad.wav"}) + "\n")
    args = ["slm", "eval", "--checkpoint", str(tmp_path / "run" / "best"), "--shards", str(shards),
            "--out", str(tmp_path / "report"), "--pairs", str(tmp_path / "pairs.jsonl"), "--valid-utterances", "2"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.stderr
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    bits = {r["model"]: r["bits_per_token"] for r in results["likelihood"]}
    assert set(bits) == {"token LM", "bigram", "unigram"} and bits["token LM"] < bits["unigram"]
    assert results["minimal_pairs"][0]["kind"] == "tones" and results["minimal_pairs"][0]["accuracy"] == 1.0
    assert (tmp_path / "report" / "plot.png").stat().st_size > 1000
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 1 and "--force" in again.stderr
    (tmp_path / "seen.jsonl").write_text((tmp_path / "pairs.jsonl").read_text())
    both = runner.invoke(cli.app, [*args, "--pairs", str(tmp_path / "seen.jsonl"), "--force"])
    assert both.exit_code == 0, both.stderr
    kinds = [p["kind"] for p in json.loads((tmp_path / "report" / "results.json").read_text())["minimal_pairs"]]
    # several sources: labelled by their names; each judged by the LM and by the LM over the bigram
    assert kinds == ["tones (pairs)", "tones, LM - n-gram (pairs)", "tones (seen)", "tones, LM - n-gram (seen)"]


def test_continuations_speaker_similarity_and_wer(tmp_path, tiny_model_dir):
    shards = _shards(tmp_path, tiny_model_dir)
    quick_lm(tmp_path, shards, steps=2)
    prompts = tmp_path / "prompts"
    for speaker in ("a", "b"):
        (prompts / speaker).mkdir(parents=True)
        for i in range(2):
            sf.write(prompts / speaker / f"{speaker}{i}.wav",
                     (0.2 * np.random.default_rng(i).standard_normal(1600)).astype(np.float32), 16000)
            (prompts / speaker / f"{speaker}{i}.txt").write_text("the dog runs\n")
    sf.write(prompts / "a" / "long.wav", np.zeros(16000, np.float32), 16000)  # beyond the LM's context: not chosen
    args = ["slm", "eval", "--checkpoint", str(tmp_path / "run" / "best"), "--shards", str(shards),
            "--out", str(tmp_path / "r"), "--valid-utterances", "2", "--prompts", str(prompts), "--num-prompts", "4"]
    result = runner.invoke(cli.app, [*args, "--prompt-seconds", "0.05"])
    assert result.exit_code == 0, result.stderr
    assert "prompt + continuation" in result.stdout and "codec resynthesis" in result.stdout
    continuations = json.loads((tmp_path / "r" / "results.json").read_text())["continuations"]
    assert set(continuations["speaker_similarity"]) == {"own_prompt", "other_speaker"}
    assert all(-1 <= v["mean"] <= 1 for v in continuations["speaker_similarity"].values())
    rows = continuations["transcripts"]
    assert len(rows) == 4 and {r["reference"] for r in rows} == {"the dog runs"}
    assert not any(r["prompt"].endswith("long.wav") for r in rows)
    # noise heard with the transcripts' three words as the vocabulary: only those words, WER from the rows
    assert all(set(r["continued"].split()) <= {"the", "dog", "runs"} for r in rows)
    errors = sum(word_errors(r["reference"], r["continued"])[0] for r in rows)
    assert continuations["wer"] == pytest.approx(errors / 12)
    too_long = runner.invoke(cli.app, [*args, "--prompt-seconds", "0.5", "--force"])
    assert too_long.exit_code == 1 and "at least two speakers" in too_long.stderr


def test_latent_distances_rank_a_perfect_continuation_above_the_baselines():
    from slm.continuation import Continued, Prompt, latent_distances

    rate, frame_rate = 1000, 100.0  # 10 samples per frame

    def latents_of(audio):  # frames of 10 samples, 4 "dimensions": their means over 4 sub-windows... [4, T]
        frames = audio[0, : audio.shape[-1] // 10 * 10].view(-1, 10)
        return torch.stack([frames[:, :3].mean(1), frames[:, 3:5].mean(1), frames[:, 5:8].mean(1), frames[:, 8:].mean(1)])

    g = torch.Generator().manual_seed(0)
    results = []
    for i in range(6):
        original = torch.randn(1, 4000, generator=g).cumsum(-1) / 30  # a wandering signal: frames differ over time
        prompt = Prompt(Path(f"{i}.wav"), f"s{i % 2}", None, 4.0)
        results.append(Continued(prompt, original.clone(), 1000, original, original, rate))
    perfect = latent_distances(results, latents_of, frame_rate, baselines=True)
    assert abs(perfect["continuation"].energy) < 0.01 and perfect["continuation"].frechet < 1e-6  # the same frames
    assert perfect["last prompt frame repeated"].energy > 0.1
    assert perfect["Gaussian fitted to the prompts"].energy > 0.05
    # pooled frames: a permutation of the continuations changes nothing, a quieter one does
    shuffled = [Continued(r.prompt, results[(i + 1) % 6].audio, 1000, r.resynthesis, r.original, rate)
                for i, r in enumerate(results)]
    same = latent_distances(shuffled, latents_of, frame_rate)["continuation"]
    assert same.energy == pytest.approx(perfect["continuation"].energy, abs=1e-9) and same.frechet < 1e-6
    quieter = [Continued(r.prompt, 0.5 * r.audio, 1000, r.resynthesis, r.original, rate) for r in results]
    assert latent_distances(quieter, latents_of, frame_rate)["continuation"].energy > 0.05


def test_ngram_log_probability_is_the_sum_of_its_token_bits():
    train = [torch.tensor([[0, 1, 0, 1, 0, 1, 2]])]
    bigram = NgramModel(train, (3,), 2)
    codes = torch.tensor([[0, 1, 0, 1]])
    # unigram: add-one counts 4, 4, 2 of 10; bigram rows: 0 -> 1 seen 3 times (4/6), 1 -> 0 twice (3/6)
    p = [0.4, 0.5 * 4 / 6 + 0.5 * 0.4, 0.5 * 3 / 6 + 0.5 * 0.4, 0.5 * 4 / 6 + 0.5 * 0.4]
    assert bigram.log_probability(codes) == pytest.approx(sum(math.log(x) for x in p))
    assert bigram.bits([codes])[0] == pytest.approx(-sum(math.log2(x) for x in p) / 4)
    assert NgramModel(train, (3,), 1).bits([codes])[0] > bigram.bits([codes])[0]  # the bigram knows the alternation
