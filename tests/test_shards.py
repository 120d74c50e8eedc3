"""Token shards: exact round trips, resumable tokenization, broken files named."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import cli
from codec.audio import load_checkpoint, model_fingerprint
from codec.audio.compress import encode_audio
from codec.audio.io import read_audio
from codec.errors import CodecError
from slm.shards import Utterance, load_utterances, read_index, read_shard, write_shard

from .test_cli import speech_like

runner = CliRunner()


def test_shard_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    items = [(Utterance(f"u{i}", 0.1 * i, "hello" if i else None, "s1"), torch.randint(0, 1024, (3, 5 + i), generator=g))
             for i in range(4)]
    entry = write_shard(tmp_path / "shard-00000.safetensors", items, "f" * 16)
    assert (entry.utterances, entry.frames) == (4, 5 + 6 + 7 + 8)
    back = read_shard(tmp_path / "shard-00000.safetensors", 3, "f" * 16)
    assert [u for u, _ in back] == [u for u, _ in items]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(back, items))
    with pytest.raises(CodecError, match="another tokenizer"):
        read_shard(tmp_path / "shard-00000.safetensors", 3, "0" * 16)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CodecError, match="cannot be read"):
        read_shard(tmp_path / "bad.safetensors")


def _corpus(folder, n: int = 5):
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"clip{i}.wav", speech_like(16000, 0.2 + 0.05 * i, 1, seed=i)[:, 0], 16000)
        (folder / f"clip{i}.txt").write_text(f"sentence {i}")
    return folder


def test_tokenize_a_folder_equals_encoding_each_clip(tmp_path, tiny_model_dir):
    corpus = _corpus(tmp_path / "corpus")
    result = runner.invoke(cli.app, ["tokenize", "--data", str(corpus), "--out", str(tmp_path / "tokens"),
                                     "--model", str(tiny_model_dir), "--shard-size", "2", "--n-q", "3"])
    assert result.exit_code == 0, result.stderr
    index, items = load_utterances(tmp_path / "tokens")
    model = load_checkpoint(tiny_model_dir)
    assert (index.tokenizer, index.tokenizer_fingerprint) == ("tiny-test", model_fingerprint(model))
    assert index.token_spec == model.config.token_spec.with_num_codebooks(3)
    assert [s.utterances for s in index.shards] == [2, 2, 1]
    assert [u.id for u, _ in items] == [f"clip{i}" for i in range(5)] and items[2][0].text == "sentence 2"
    for (utterance, codes), i in zip(items, range(5)):
        expected = encode_audio(model, read_audio(corpus / f"clip{i}.wav"), 3).codes[0]
        assert torch.equal(codes, expected) and utterance.duration == pytest.approx(0.2 + 0.05 * i)


def test_tokenize_resumes_and_refuses_another_model(tmp_path, tiny_model_dir):
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "tokens"
    args = ["tokenize", "--data", str(corpus), "--out", str(out), "--model", str(tiny_model_dir), "--shard-size", "2"]
    assert runner.invoke(cli.app, args).exit_code == 0
    first = (out / "shard-00000.safetensors").stat().st_mtime_ns
    (out / "shard-00002.safetensors").unlink()  # as if the run had been killed before the last shard
    (out / "index.json").unlink()
    assert runner.invoke(cli.app, args).exit_code == 0
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == first  # kept, not redone
    assert read_index(out).num_utterances == 5
    torch.manual_seed(3)
    from codec.audio import AudioCodec, save_pretrained
    from codec.audio.presets import tiny

    other = save_pretrained(AudioCodec(tiny()), tmp_path / "other")
    result = runner.invoke(cli.app, [*args[:-4], "--model", str(other), "--shard-size", "2"])
    assert result.exit_code == 1 and "another tokenizer" in result.stderr


def test_tokenize_a_manifest_and_bad_sources(tmp_path, tiny_model_dir):
    _corpus(tmp_path / "corpus", 2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"path": f"corpus/clip{i}.wav", "id": f"x{i}", "speaker": "s"})
                                  for i in range(2)))
    assert runner.invoke(cli.app, ["tokenize", "--data", str(manifest), "--out", str(tmp_path / "t"),
                                   "--model", str(tiny_model_dir)]).exit_code == 0
    _, items = load_utterances(tmp_path / "t")
    assert [(u.id, u.speaker) for u, _ in items] == [("x0", "s"), ("x1", "s")]
    for data, message in [(tmp_path / "missing", "does not exist"), (tmp_path / "empty", "No audio")]:
        if data.name == "empty":
            data.mkdir()
        result = runner.invoke(cli.app, ["tokenize", "--data", str(data), "--out", str(tmp_path / "u"),
                                         "--model", str(tiny_model_dir)])
        assert result.exit_code == 1 and message in result.stderr
    (tmp_path / "t" / "index.json").write_text("{")
    with pytest.raises(CodecError, match="not a valid shard index"):
        read_index(tmp_path / "t")


@pytest.mark.slow
def test_tokenize_under_torchrun_splits_the_shards(tmp_path, tiny_model_dir):
    import subprocess
    import sys

    corpus = _corpus(tmp_path / "corpus")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cli",
                             "tokenize", "--data", str(corpus), "--out", str(tmp_path / "tokens"), "--model",
                             str(tiny_model_dir), "--shard-size", "2"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote 5 utterances") == 1  # rank 0 reports
    index, items = load_utterances(tmp_path / "tokens")
    assert [s.utterances for s in index.shards] == [2, 2, 1] and [u.id for u, _ in items] == [f"clip{i}" for i in range(5)]
    alone = tmp_path / "alone"
    assert runner.invoke(cli.app, ["tokenize", "--data", str(corpus), "--out", str(alone), "--model",
                                   str(tiny_model_dir), "--shard-size", "2"]).exit_code == 0
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(items, load_utterances(alone)[1]))


def test_tokenize_a_recipes_corpus(tmp_path, tiny_model_dir):
    corpus = _corpus(tmp_path / "corpus", 12)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {corpus: folder, valid_clips: 2}\n")
    result = runner.invoke(cli.app, ["tokenize", "--data", str(recipe), "--data-dir", str(corpus),
                                     "--out", str(tmp_path / "t"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.stderr
    _, items = load_utterances(tmp_path / "t")
    assert len(items) == 12 and {u.text for u, _ in items} == {f"sentence {i}" for i in range(12)}
