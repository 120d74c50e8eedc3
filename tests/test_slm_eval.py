"""LM evaluation: n-gram baselines, minimal-pair scoring in both layouts, the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

import cli
from slm.eval import Accuracy, ngram_bits, read_pairs

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


def test_continuation_speaker_similarity(tmp_path, tiny_model_dir):
    shards = _shards(tmp_path, tiny_model_dir)
    quick_lm(tmp_path, shards, steps=2)
    prompts = tmp_path / "prompts"
    for speaker in ("a", "b"):
        (prompts / speaker).mkdir(parents=True)
        for i in range(2):
            sf.write(prompts / speaker / f"{speaker}{i}.wav",
                     (0.2 * np.random.default_rng(i).standard_normal(1600)).astype(np.float32), 16000)
    result = runner.invoke(cli.app, ["slm", "eval", "--checkpoint", str(tmp_path / "run" / "best"), "--shards",
                                     str(shards), "--out", str(tmp_path / "r"), "--valid-utterances", "2",
                                     "--prompts", str(prompts), "--num-prompts", "4", "--prompt-seconds", "0.05",
                                     "--continue-seconds", "0.03"])
    assert result.exit_code == 0, result.stderr
    similarity = json.loads((tmp_path / "r" / "results.json").read_text())["continuation_speaker_similarity"]
    assert set(similarity) == {"own prompt", "another speaker's prompt"}
    assert all(-1 <= v["mean"] <= 1 for v in similarity.values())
