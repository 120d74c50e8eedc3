"""Latent shards (`codec tokenize --continuous`): the codec's own latents, merged statistics, clear errors."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import cli
from codec.audio import load_checkpoint, model_fingerprint
from codec.audio.io import read_audio, to_channels
from codec.audio.resample import resample, resampled_length
from codec.errors import CodecError
from slm.shards import (LatentStats, LatentSums, Utterance, inspect_shard, load_utterances, read_index, read_shard,
                        write_shard)

from .test_cli import speech_like

runner = CliRunner()
FP16 = {"rtol": 2e-3, "atol": 1e-4}  # float16 storage: 11 significant bits


def _corpus(folder, n: int = 5):
    """Short clips; clip1 is stereo at 22.05 kHz (downmixed and resampled to the codec's 16 kHz)."""
    folder.mkdir()
    for i in range(n):
        sr, channels = (22050, 2) if i == 1 else (16000, 1)
        sf.write(folder / f"clip{i}.wav", speech_like(sr, 0.1 + 0.03 * i, channels, seed=i), sr)
        (folder / f"clip{i}.txt").write_text(f"sentence {i}")
    return folder


def _own_latents(model, path) -> torch.Tensor:
    """encode_latent of a file's audio, downmixed and resampled to the model's rate: [D, T]."""
    audio = read_audio(path)
    x = resample(to_channels(audio.samples, 1), audio.sample_rate, model.sample_rate)
    with torch.inference_mode():
        return model.encode_latent(x[None])[0]


def _tokenize(corpus, out, model_dir, *extra):
    return runner.invoke(cli.app, ["tokenize", "--continuous", "--data", str(corpus), "--out", str(out),
                                   "--model", str(model_dir), "--shard-size", "2", *extra])


@pytest.fixture(scope="module")
def latent_folder(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("latents")
    corpus = _corpus(tmp / "corpus")
    result = _tokenize(corpus, tmp / "latents", tiny_model_dir)
    assert result.exit_code == 0, result.stderr
    return corpus, tmp / "latents", result


def test_tokenize_continuous_stores_the_codecs_latents(latent_folder, tiny_model_dir):
    corpus, out, result = latent_folder
    assert "5 utterances" in result.stdout and "latents of 16 dims" in " ".join(result.stdout.split())
    index, items = load_utterances(out)
    model = load_checkpoint(tiny_model_dir)
    assert (index.kind, index.tokenizer_fingerprint, index.width) == ("latents", model_fingerprint(model), 16)
    assert index.token_spec == model.config.token_spec and [s.utterances for s in index.shards] == [2, 2, 1]
    assert [u.id for u, _ in items] == [f"clip{i}" for i in range(5)] and items[3][0].text == "sentence 3"
    own = [_own_latents(model, corpus / f"clip{i}.wav") for i in range(5)]
    for (utterance, latents), expected, i in zip(items, own, range(5)):
        assert latents.dtype == torch.float32 and latents.shape == expected.shape
        audio = read_audio(corpus / f"clip{i}.wav")
        samples = resampled_length(audio.num_samples, audio.sample_rate, model.sample_rate)
        assert latents.shape[-1] == -(-samples // model.hop_length)
        torch.testing.assert_close(latents, expected, **FP16)
        assert utterance.duration == pytest.approx(0.1 + 0.03 * i, abs=1e-4)
    # the index's statistics are those of all frames of all utterances, merged from the 3 shards' sums
    frames = torch.cat([x for _, x in items], dim=-1).double()  # [D, all frames]
    stats = index.latent_stats
    assert stats is not None and frames.shape[-1] == index.num_frames
    torch.testing.assert_close(torch.tensor(stats.mean, dtype=torch.float64), frames.mean(-1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(torch.tensor(stats.std, dtype=torch.float64), frames.std(-1, unbiased=False),
                               rtol=1e-6, atol=1e-9)
    exact = torch.cat(own, dim=-1).double()  # the float32 latents themselves, before float16 storage
    torch.testing.assert_close(torch.tensor(stats.std, dtype=torch.float64), exact.std(-1, unbiased=False), **FP16)
    assert torch.allclose(torch.tensor(stats.mean, dtype=torch.float64), exact.mean(-1), rtol=2e-3,
                          atol=2e-3 * float(exact.std(-1).max()))


def test_decode_latent_of_stored_latents(latent_folder, tiny_model_dir):
    corpus, out, _ = latent_folder
    index, items = load_utterances(out, kind="latents")
    model = load_checkpoint(tiny_model_dir)
    stats = index.latent_stats
    for i in (1, 4):
        latents = items[i][1]
        generated = stats.normalize(latents[None])  # what a latent LM would produce, then denormalized
        with torch.inference_mode():
            audio = model.decode_latent(stats.denormalize(generated))
            reference = model.decode_latent(_own_latents(model, corpus / f"clip{i}.wav")[None])
        assert audio.shape == (1, 1, latents.shape[-1] * model.hop_length) == reference.shape
        assert float((audio - reference).abs().max()) <= 1e-3 * float(reference.abs().max()) + 1e-6


def test_latent_stats_normalize_round_trip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 50, generator=g) * torch.tensor([1.0, 5.0, 0.1, 20.0])[:, None] + torch.tensor(
        [0.0, -3.0, 2.0, 100.0])[:, None]
    sums = LatentSums.of(x[0].t()) + LatentSums.of(x[1].t()) + LatentSums.of(x[2].t())
    stats = LatentStats.from_sums(sums)
    flat = x.permute(1, 0, 2).reshape(4, -1).double()
    torch.testing.assert_close(torch.tensor(stats.mean), flat.mean(-1).float())
    torch.testing.assert_close(torch.tensor(stats.std), flat.std(-1, unbiased=False).float())
    normalized = stats.normalize(x)
    torch.testing.assert_close(normalized.permute(1, 0, 2).reshape(4, -1).mean(-1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(stats.denormalize(normalized), x, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(stats.denormalize(stats.normalize(x[0])), x[0], rtol=1e-5, atol=1e-4)  # [D, T]
    with pytest.raises(ValueError, match=r"\[\.\.\., 4, T\]"):
        stats.normalize(torch.zeros(3, 50))
    constant = LatentStats.from_sums(LatentSums.of(torch.ones(10, 2)))  # a dimension that never moves
    assert constant.std == (1e-5, 1e-5) and torch.isfinite(constant.normalize(torch.ones(2, 3))).all()


def _latent_items(n: int = 3, d: int = 4):
    g = torch.Generator().manual_seed(1)
    return [(Utterance(f"u{i}", 0.1 * (i + 1)), torch.randn(d, 3 + i, generator=g)) for i in range(n)]


def test_latent_shard_round_trip_kinds_and_corruption(tmp_path):
    items = _latent_items()
    path = tmp_path / "shard-00000.safetensors"
    entry = write_shard(path, items, "f" * 16, kind="latents")
    assert (entry.utterances, entry.frames) == (3, 3 + 4 + 5)
    back = read_shard(path, fingerprint="f" * 16, kind="latents", latent_dim=4)
    assert [u for u, _ in back] == [u for u, _ in items]
    for (_, a), (_, b) in zip(back, items):
        torch.testing.assert_close(a, b, **FP16)
    info = inspect_shard(path, "latents", 4, "f" * 16)
    assert (info.entry, info.kind, info.width, info.latent_sums.frames) == (entry, "latents", 4, 12)
    with pytest.raises(CodecError, match="holds latents .*not the codes"):
        read_shard(path, 4, "f" * 16)
    codes = tmp_path / "codes.safetensors"
    write_shard(codes, [(Utterance("c", 0.1), torch.zeros(2, 3, dtype=torch.long))], "f" * 16)
    with pytest.raises(CodecError, match="holds codes .*not the latents"):
        read_shard(codes, kind="latents")
    with pytest.raises(CodecError, match="inconsistent"):
        read_shard(path, kind="latents", latent_dim=8)
    data = torch.cat([x.t() for _, x in items]).half()
    metadata = {"utterances": json.dumps([{"id": u.id, "duration": u.duration} for u, _ in items]),
                "tokenizer_fingerprint": "f" * 16, "latent_sums": json.dumps(
                    {"frames": 12, "sum": [0.0] * 4, "sum_sq": [1.0] * 4})}
    broken = {  # offsets beyond the tensor; statistics of other frames; no statistics
        "offsets": ({"offsets": torch.tensor([0, 3, 7, 99])}, metadata),
        "sums": ({"offsets": torch.tensor([0, 3, 7, 12])}, {**metadata, "latent_sums": json.dumps(
            {"frames": 11, "sum": [0.0] * 4, "sum_sq": [1.0] * 4})}),
        "missing": ({"offsets": torch.tensor([0, 3, 7, 12])},
                    {k: v for k, v in metadata.items() if k != "latent_sums"}),
    }
    for name, (tensors, meta) in broken.items():
        save_file({"latents": data, **tensors}, str(tmp_path / f"{name}.safetensors"), metadata=meta)
        with pytest.raises(CodecError, match="inconsistent" if name != "missing" else "cannot be read"):
            read_shard(tmp_path / f"{name}.safetensors", kind="latents")
    with pytest.raises(CodecError, match="latents of u1 are not finite in float16"):
        write_shard(tmp_path / "big.safetensors", [items[0], (items[1][0], items[1][1] * 1e6)], "f" * 16,
                    kind="latents")


def test_resume_and_kind_errors_through_the_cli(tmp_path, tiny_model_dir):
    corpus = _corpus(tmp_path / "corpus", 4)
    out = tmp_path / "latents"
    assert _tokenize(corpus, out, tiny_model_dir).exit_code == 0
    before = read_index(out)
    first = (out / "shard-00000.safetensors").stat().st_mtime_ns
    (out / "shard-00001.safetensors").unlink()  # as if the run had been killed before the last shard
    (out / "index.json").unlink()
    assert _tokenize(corpus, out, tiny_model_dir).exit_code == 0
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == first  # kept, not redone
    assert read_index(out) == before
    with pytest.raises(CodecError, match="holds latents"):
        load_utterances(out, kind="codes")

    codes = tmp_path / "codes"
    codes_args = ["tokenize", "--data", str(corpus), "--out", str(codes), "--model", str(tiny_model_dir),
                  "--shard-size", "2"]
    assert runner.invoke(cli.app, codes_args).exit_code == 0
    assert read_index(codes).kind == "codes" and read_index(codes).latent_stats is None
    for result, message in [
        (_tokenize(corpus, codes, tiny_model_dir), "holds codes (made by `codec tokenize`), not the latents"),
        (runner.invoke(cli.app, [*codes_args[:3], "--out", str(out), *codes_args[5:]]), "holds latents"),
        (_tokenize(corpus, tmp_path / "x", tiny_model_dir, "--n-q", "2"), "--n-q does not apply to --continuous"),
    ]:
        assert result.exit_code == 1 and message in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_an_index_without_kind_is_of_codes(tmp_path):
    write_shard(tmp_path / "shard-00000.safetensors", [(Utterance("c", 0.1), torch.ones(2, 3, dtype=torch.long))],
                "f" * 16)
    spec = {"modality": "audio", "codebook_sizes": [64, 64], "frame_rate": 1000.0}
    (tmp_path / "index.json").write_text(json.dumps({
        "format_version": 1, "tokenizer": "t", "tokenizer_fingerprint": "f" * 16, "token_spec": spec,
        "shards": [{"file": "shard-00000.safetensors", "utterances": 1, "frames": 3}]}))
    index, items = load_utterances(tmp_path, kind="codes")
    assert (index.kind, index.latent_stats) == ("codes", None) and torch.equal(items[0][1], torch.ones(2, 3).long())
    document = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**document, "kind": "latents"}))  # latents without statistics
    with pytest.raises(CodecError, match="not a valid shard index"):
        read_index(tmp_path)


@pytest.mark.slow
def test_tokenize_continuous_under_torchrun_merges_the_ranks_statistics(tmp_path, latent_folder, tiny_model_dir):
    import subprocess
    import sys

    corpus, alone, _ = latent_folder
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cli",
                             "tokenize", "--continuous", "--data", str(corpus), "--out", str(tmp_path / "latents"),
                             "--model", str(tiny_model_dir), "--shard-size", "2"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote 5 utterances") == 1  # rank 0 reports
    index, items = load_utterances(tmp_path / "latents")
    expected, expected_items = load_utterances(alone)
    assert index.shards == expected.shards and [u for u, _ in items] == [u for u, _ in expected_items]
    assert index.latent_stats.mean == pytest.approx(expected.latent_stats.mean, rel=1e-9, abs=1e-12)
    assert index.latent_stats.std == pytest.approx(expected.latent_stats.std, rel=1e-9)
    for (_, a), (_, b) in zip(items, expected_items):
        torch.testing.assert_close(a, b, **FP16)
