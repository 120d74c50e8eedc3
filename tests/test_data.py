"""Corpus manifests, the segment dataset, the step batch sampler and the loaders (codec/data/)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet

from codec.audio.io import resample
from codec.config import config_from_dict, config_to_dict
from codec.data import (DataConfig, SegmentDataset, StepBatchSampler, build_train_loader, build_valid_batches,
                        prepare_manifests)
from codec.data.transforms import change_speed, rms_db
from codec.errors import CodecError

from . import corpora
from .corpora import CORPORA, Tree, put, speech_pieces

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
DEVSPEECH = SHARED / "data" / "devspeech"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensor ops are fastest (and steady on a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pieces() -> list[np.ndarray]:
    return speech_pieces()


def config_for(name: str, tree: Tree, **kw) -> DataConfig:
    kw = {"valid_clips": 2, **tree.overrides, **kw}
    return DataConfig(corpus=name.removesuffix("_opus"), data_dir=str(tree.root), **kw)


@pytest.mark.parametrize("name", list(CORPORA))
def test_corpus_manifests_and_segments(tmp_path: Path, pieces: list[np.ndarray], name: str) -> None:
    tree = CORPORA[name](tmp_path / "data", pieces)
    config = config_for(name, tree, gain_db=(0.0, 0.0))
    out = tmp_path / "manifests"
    train, valid = prepare_manifests(config, out)

    # every clip found once, with its transcript and speaker; a disjoint split of the right size
    ids_train, ids_valid = [c.recording_id for c in train], [c.recording_id for c in valid]
    assert len(ids_valid) == 2 and not set(ids_train) & set(ids_valid)
    assert sorted(ids_train + ids_valid) == sorted(tree.expected)
    if tree.dev:
        assert set(ids_valid) <= tree.dev
    for cut in [*train, *valid]:
        (sup,) = cut.supervisions
        assert (sup.text, sup.speaker) == tree.expected[cut.recording_id]

    # a second call reuses the written manifests; a different selection prepares again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = prepare_manifests(config, out)
    assert not again[0].is_lazy and not again[1].is_lazy
    assert [c.id for c in again[0]] == [c.id for c in train] and [c.id for c in again[1]] == [c.id for c in valid]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert len(prepare_manifests(replace(config, valid_clips=1), out)[1]) == 1

    # segments at the model's rate, at the target loudness, reproducible crops
    ds = SegmentDataset(train, 16000, 8000, config, train=True)
    a, b, c = ds[(0, 7)], ds[(0, 7)], ds[(0, 8)]
    assert a.shape == (1, 8000) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    whole = SegmentDataset(train, 16000, None, config, train=True)
    for i in range(len(whole)):
        x = whole[(i, 0)]
        assert x.shape[-1] == pytest.approx(train[i].duration * 16000, abs=0.06 * 16000)
        assert rms_db(x) == pytest.approx(-20.0, abs=0.5) and x.abs().max() <= 1.0


@pytest.mark.skipif(not (DEVSPEECH / "manifest.jsonl").is_file(), reason="shared devspeech data not present")
def test_real_devspeech(tmp_path: Path) -> None:
    config = DataConfig(corpus="devspeech", data_dir=str(DEVSPEECH), valid_clips=8)
    train, valid = prepare_manifests(config, tmp_path)
    lines = [json.loads(line) for line in (DEVSPEECH / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert len(train) + len(valid) == len(lines) and len(valid) == 8
    by_id = {str(Path(e["path"]).with_suffix("")): e for e in lines}
    for cut in [*train, *valid]:
        entry = by_id[cut.recording_id]
        assert cut.supervisions[0].text == entry["text"] and cut.supervisions[0].speaker == entry["speaker"]
        assert cut.recording.sampling_rate == entry["sample_rate"]
    alsa = next(i for i, c in enumerate(train) if c.recording.sampling_rate == 48000)
    x = SegmentDataset(train, 24000, 12000, config, train=True)[(alsa, 3)]
    assert x.shape == (1, 12000)


def test_commonvoice_subsets_and_languages(tmp_path: Path, pieces: list[np.ndarray]) -> None:
    tree = corpora.commonvoice(tmp_path / "data", pieces)
    config = config_for("commonvoice", tree, subsets=("validated",))
    train, valid = prepare_manifests(config, tmp_path / "m1")
    ids = {c.recording_id for c in train}
    assert "common_voice_en_1006" in ids  # test.tsv rows are in validated.tsv
    assert {c.recording_id for c in valid} <= tree.dev and not ids & {c.recording_id for c in valid}
    (tmp_path / "data" / "cv-corpus-17.0-2024-03-15" / "de" / "clips").mkdir(parents=True)
    (tmp_path / "data" / "cv-corpus-17.0-2024-03-15" / "de" / "train.tsv").write_text("client_id\tpath\tsentence\n")
    with pytest.raises(CodecError, match=r"several languages \(de, en\); set data\.language"):
        prepare_manifests(replace(config, language=""), tmp_path / "m2")
    with pytest.raises(CodecError, match="Language 'fr' was not found"):
        prepare_manifests(replace(config, language="fr"), tmp_path / "m3")
    assert len(prepare_manifests(replace(config, language="English"), tmp_path / "m4")[0]) == len(train)
    both = prepare_manifests(replace(config, subsets=("train", "validated")), tmp_path / "m5")[0]
    assert [c.id for c in both] == [c.id for c in train]  # clips listed in both tables count once


def test_manifest_cache_edge_cases(tmp_path: Path, pieces: list[np.ndarray]) -> None:
    tree = corpora.folder(tmp_path / "data", pieces)
    config = config_for("folder", tree, valid_clips=0)
    out = tmp_path / "out"
    assert [len(c) for c in prepare_manifests(config, out)] == [5, 0]
    assert [len(c) for c in prepare_manifests(config, out)] == [5, 0]  # an empty cached manifest reads back
    (out / "cuts_key.json").write_text("{not json")
    assert [len(c) for c in prepare_manifests(replace(config, valid_clips=1), out)] == [4, 1]
    assert json.loads((out / "cuts_key.json").read_text())["corpus"] == "folder"
    put(tree.root / "zed" / "new.flac", pieces[5], 16000)  # the corpus grew: same key, so cached (documented)
    assert len(prepare_manifests(replace(config, valid_clips=1), out)[0]) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_extra_training_folders(tmp_path: Path, pieces: list[np.ndarray], monkeypatch) -> None:
    tree = corpora.librispeech(tmp_path / "data", pieces)
    config = config_for("librispeech", tree, valid_clips=1)
    base_train, base_valid = prepare_manifests(config, tmp_path / "m0")
    put(tmp_path / "tts" / "voice_a" / "u1.wav", pieces[6], 16000)
    (tmp_path / "tts" / "voice_a" / "u1.txt").write_text("some words\n")
    put(tmp_path / "tts" / "voice_b" / "u1.wav", pieces[7], 16000)
    put(tmp_path / "tts" / "short.wav", pieces[8][:1600], 16000)
    valid_file = Path(base_valid[0].recording.sources[0].source)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "valid_again.flac").symlink_to(valid_file)  # a validation clip: never trained on
    monkeypatch.chdir(tmp_path)  # relative folders are taken from the current folder
    extra = replace(config, extra_train_dirs=("tts", str(tmp_path / "more")), min_seconds=0.5)
    train, valid = prepare_manifests(extra, tmp_path / "m1")
    assert [c.id for c in valid] == [c.id for c in base_valid]  # validation stays the corpus' own
    assert [c.id for c in train] == sorted([c.id for c in base_train] + ["extra0/voice_a/u1.wav", "extra0/voice_b/u1.wav"])
    added = {c.id: c for c in train}
    assert added["extra0/voice_a/u1.wav"].supervisions[0].text == "some words"
    assert added["extra0/voice_b/u1.wav"].supervisions[0].speaker == "voice_b"
    # the extra folders key the cache: without them the corpus alone comes back
    assert [c.id for c in prepare_manifests(config, tmp_path / "m1")[0]] == [c.id for c in base_train]
    with pytest.raises(CodecError, match=r"^Extra training folder '.*nowhere' \(data\.extra_train_dirs\) does not exist\.$"):
        prepare_manifests(replace(config, extra_train_dirs=("nowhere",)), tmp_path / "m2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match=r"^Extra training folder '.*empty' has no audio clips \(data\.extra_train_dirs\)\.$"):
        prepare_manifests(replace(config, extra_train_dirs=("empty",)), tmp_path / "m3")


def test_librispeech_subsets_and_min_seconds(tmp_path: Path, pieces: list[np.ndarray]) -> None:
    tree = corpora.librispeech(tmp_path / "data", pieces)
    config = config_for("librispeech", tree, subsets=("dev-clean",), valid_clips=1)
    train, valid = prepare_manifests(config, tmp_path / "m1")  # no dev part outside training: hold out by hash
    assert (len(train), len(valid)) == (1, 1)
    assert {c.recording_id for c in [*train, *valid]} == tree.dev
    with pytest.raises(CodecError, match="part 'train-clean-360' was not found in .* \\(found: dev-clean, train-clean-100\\)"):
        prepare_manifests(replace(config, subsets=("train-clean-360",)), tmp_path / "m2")
    long_only = replace(config, subsets=(), min_seconds=1.2)
    train, valid = prepare_manifests(long_only, tmp_path / "m3")
    assert all(c.duration >= 1.2 for c in [*train, *valid]) and len(train) < 5


@pytest.mark.parametrize("name, message", [
    ("librispeech", r"does not look like LibriSpeech: expected folders such as train-clean-100/<speaker>/<chapter>/\*\.flac"),
    ("libritts", r"does not look like LibriTTS: expected folders such as train-clean-100/"),
    ("vctk", r"does not look like VCTK: expected wav48_silence_trimmed/<speaker>/<speaker>_<id>_mic1\.flac"),
    ("ljspeech", r"does not look like LJSpeech: expected metadata\.csv and wavs/LJ\*\.wav"),
    ("commonvoice", r"does not look like Common Voice: expected <language>/clips/\*\.mp3"),
    ("mls", r"does not look like Multilingual LibriSpeech: expected mls_<language>/"),
    ("devspeech", r"does not look like devspeech: expected manifest\.jsonl"),
    ("folder", r"No audio clips were found for an audio folder in '.*stuff' \(expected audio files"),
])
def test_wrong_data_dir_is_a_clear_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("nothing here")
    with pytest.raises(CodecError, match=message) as info:
        prepare_manifests(DataConfig(corpus=name, data_dir=str(tmp_path / "stuff")), tmp_path / "out")
    assert "\n" not in str(info.value) and str(info.value).endswith(".")
    with pytest.raises(CodecError, match=r"Data folder '.*missing' does not exist \(expected"):
        prepare_manifests(DataConfig(corpus=name, data_dir=str(tmp_path / "missing")), tmp_path / "out")
    with pytest.raises(CodecError, match="No data folder was given"):
        prepare_manifests(DataConfig(corpus=name), tmp_path / "out")


def test_empty_or_too_small_corpus_is_a_clear_error(tmp_path: Path, pieces: list[np.ndarray]) -> None:
    part = tmp_path / "LibriSpeech" / "train-clean-100" / "19" / "198"
    part.mkdir(parents=True)
    (part / "19-198.trans.txt").write_text("19-198-0000 A TEXT WITHOUT AUDIO\n")
    with pytest.raises(CodecError, match=r"No audio clips were found for LibriSpeech in '.*corpus0' \(expected folders"):
        prepare_manifests(DataConfig(corpus="librispeech", data_dir=str(tmp_path)), tmp_path / "out")
    (tmp_path / "LJSpeech-1.1" / "wavs").mkdir(parents=True)
    (tmp_path / "LJSpeech-1.1" / "metadata.csv").write_text("LJ001-0001|Text|Text\n")
    with pytest.raises(CodecError, match="No audio clips were found for LJSpeech"):
        prepare_manifests(DataConfig(corpus="ljspeech", data_dir=str(tmp_path)), tmp_path / "out")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "manifest.jsonl").write_text("")
    with pytest.raises(CodecError, match="No audio clips were found for devspeech"):
        prepare_manifests(DataConfig(corpus="devspeech", data_dir=str(tmp_path / "dev")), tmp_path / "out")
    put(tmp_path / "few" / "a.wav", pieces[0], 16000)
    with pytest.raises(CodecError, match=r"has only 1 training clip, too few to hold out data\.valid_clips \(8\) "
                                         r"for validation and train on the rest; lower data\.valid_clips or add clips\.$"):
        prepare_manifests(DataConfig(corpus="folder", data_dir=str(tmp_path / "few")), tmp_path / "out")


@pytest.mark.parametrize("name", list(CORPORA))
def test_every_reader_says_why_no_training_clip_is_left(tmp_path: Path, pieces: list[np.ndarray], name: str) -> None:
    tree = CORPORA[name](tmp_path / "data", pieces)
    config = config_for(name, tree)
    pool = len(tree.expected) - len(tree.dev)  # clips of the training parts
    with pytest.raises(CodecError, match=rf"^All {pool} training clips of .* are shorter than data\.min_seconds "
                                         r"\(100 s; the longest is 1\.\d\d s\); lower data\.min_seconds\.$") as info:
        prepare_manifests(replace(config, min_seconds=100.0), tmp_path / "m1")
    if name == "librispeech":
        assert "(train-clean-100 for training, dev-clean for validation)" in str(info.value)
    if tree.dev:  # validation clips come from the dev split: every training clip stays
        assert len(prepare_manifests(replace(config, valid_clips=pool), tmp_path / "m2")[0]) == pool
    else:
        with pytest.raises(CodecError, match=rf"has only {pool} training clips, too few to hold out "
                                             rf"data\.valid_clips \({pool}\) for validation and train on the rest"):
            prepare_manifests(replace(config, valid_clips=pool), tmp_path / "m2")


@pytest.mark.parametrize("name", ["librispeech", "libritts"])
def test_a_libri_tree_without_training_parts_says_so(tmp_path: Path, pieces: list[np.ndarray], name: str) -> None:
    tree = CORPORA[name](tmp_path / "data", pieces)
    base = tree.root / "LibriSpeech" if (tree.root / "LibriSpeech").is_dir() else tree.root
    for part in base.glob("train-*"):
        shutil.rmtree(part)
    config = config_for(name, tree, valid_clips=1)
    with pytest.raises(CodecError, match=r"in '.*' has no training part \(found: dev-clean\); add one such as "
                                         r"train-clean-100, or train on these with data\.subsets=\[dev-clean\]\.$"):
        prepare_manifests(config, tmp_path / "m1")
    train, valid = prepare_manifests(replace(config, subsets=("dev-clean",)), tmp_path / "m2")
    assert (len(train), len(valid)) == (1, 1)


def test_config_validation_and_round_trip() -> None:
    config = config_from_dict(DataConfig, {"corpus": "mls", "subsets": ["train"], "gain_db": [-3, 3],
                                           "loudness_db": None})
    assert config.subsets == ("train",) and config.gain_db == (-3.0, 3.0) and config.loudness_db is None
    assert config_from_dict(DataConfig, config_to_dict(config)) == config
    for bad, message in [({"corpus": "timit"}, "unknown corpus"), ({"crop_seconds": 0}, "crop_seconds"),
                         ({"valid_clips": -1}, "valid_clips"), ({"gain_db": (3.0, -3.0)}, "gain_db"),
                         ({"loudness_db": 3.0}, "loudness_db"), ({"min_seconds": -1.0}, "min_seconds"),
                         ({"subsets": ("",)}, "subsets"), ({"num_workers": -1}, "num_workers"),
                         ({"subsets": ("train",)}, "subsets apply only to"),
                         ({"language": "en"}, "language applies only to"),
                         ({"speed_factors": (0.9, 3.0)}, "speed_factors"),
                         ({"extra_train_dirs": ("",)}, "extra_train_dirs")]:
        with pytest.raises(ValueError, match=message):
            DataConfig(**{"corpus": "folder", **bad})


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, pieces: list[np.ndarray]):
    """(train cuts, valid cuts, config) of a 7-clip folder corpus (one clip at 48 kHz stereo)."""
    root = tmp_path_factory.mktemp("small") / "audio"
    for n in range(6):
        put(root / f"spk{n % 2}" / f"u{n}.flac", pieces[n], 16000)
    stereo = np.stack([pieces[6], 0.5 * pieces[6]], axis=1)
    (root / "spk0").mkdir(exist_ok=True)
    sf.write(root / "spk0" / "stereo.wav", resample(torch.from_numpy(stereo.T), 16000, 48000).numpy().T, 48000)
    config = DataConfig(corpus="folder", data_dir=str(root), valid_clips=2, valid_seconds=0.5)
    train, valid = prepare_manifests(config, root.parent / "manifests")
    return train, valid, config


def test_dataset_training_items(small_set) -> None:
    train, valid, config = small_set
    stereo = CutSet.from_cuts(c for c in [*train, *valid] if c.recording_id.endswith("stereo.wav"))
    assert SegmentDataset(stereo, 24000, 24000, config, train=True)[(0, 0)].shape == (1, 24000)  # 48 kHz stereo
    ds = SegmentDataset(train, 24000, 48000, config, train=True)  # 2 s crops, clips of 1.0-1.3 s
    x, whole = ds[(0, 1)], SegmentDataset(train, 24000, None, config, train=True)[(0, 1)]
    assert x.shape == (1, 48000) and torch.equal(x[..., :whole.shape[-1]], whole)  # same gain, no crop
    assert x[..., whole.shape[-1]:].abs().max() == 0  # zero-padded at the end
    levels = [rms_db(SegmentDataset(train, 24000, None, config, train=True)[(0, s)]) for s in range(40)]
    assert -20 - 6.01 <= min(levels) < -23 and -17 < max(levels) <= -20 + 6.01  # gain drawn in [-6, 6] dB
    quiet = replace(config, loudness_db=-60.0, gain_db=(0.0, 0.0))
    assert rms_db(SegmentDataset(train, 24000, None, quiet, train=True)[0]) == pytest.approx(-60, abs=0.01)
    loud = replace(config, loudness_db=0.0, gain_db=(0.0, 0.0))  # would need peaks > 1: scaled to peak 1 instead
    y = SegmentDataset(train, 24000, None, loud, train=True)[0]
    assert y.abs().max().item() == pytest.approx(1.0) and rms_db(y) < -3
    cached = SegmentDataset(train, 24000, 12000, config, train=True, cache=True)
    assert all(torch.equal(cached[(i, 5)], ds_i) for i, ds_i in
               [(i, SegmentDataset(train, 24000, 12000, config, train=True)[(i, 5)]) for i in range(len(train))])
    assert torch.equal(cached[(1, 5)], cached[(1, 5)]) and len(cached._clips) == len(train)


def test_speed_perturbation(small_set) -> None:
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000 * t)[None]
    for factor in (0.9, 1.05, 1.1):
        fast = change_speed(tone, factor)
        assert abs(fast.shape[-1] - 16000 / factor) <= 1
        peak_hz = torch.fft.rfft(fast[0]).abs().argmax().item() * 16000 / fast.shape[-1]
        assert peak_hz == pytest.approx(1000 * factor, abs=2)  # pitch scaled by the factor
    assert change_speed(tone, 1.0) is tone
    train, _, config = small_set
    plain = SegmentDataset(train, 16000, 8000, replace(config, gain_db=(0.0, 0.0)), train=True)
    perturbed = SegmentDataset(train, 16000, 8000, replace(config, gain_db=(0.0, 0.0), speed_factors=(0.9, 1.1)),
                               train=True)
    items = [perturbed[(0, s)] for s in range(6)]
    assert all(x.shape == (1, 8000) for x in items) and torch.equal(items[0], perturbed[(0, 0)])  # seeded
    assert not any(torch.allclose(x, plain[(0, s)]) for s, x in enumerate(items))  # never the plain crop


def test_dataset_validation_items(small_set) -> None:
    _, valid, config = small_set
    ds = SegmentDataset(valid, 16000, 8000, config, train=False)
    batches = list(build_valid_batches(ds))
    assert len(batches) == 2
    for i, batch in enumerate(batches):
        assert batch.shape == (1, 1, 8000)  # first valid_seconds = 0.5 s, whatever crop_samples says
        assert torch.equal(batch[0], ds[(i, 123)]) and torch.equal(ds[i], ds[i])
    long = SegmentDataset(valid, 16000, None, replace(config, valid_seconds=10.0), train=False)
    assert long[0].shape[-1] == pytest.approx(valid[0].duration * 16000, abs=2)  # shorter clips: not padded
    assert rms_db(long[0]) == pytest.approx(-20.0, abs=0.5)


def test_sampler_is_deterministic_and_resumable() -> None:
    def steps(sampler: StepBatchSampler, n: int) -> list:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    base = steps(StepBatchSampler(10, 4, seed=1), 12)
    assert base == steps(StepBatchSampler(10, 4, seed=1), 12)
    assert base != steps(StepBatchSampler(10, 4, seed=2), 12)
    assert steps(StepBatchSampler(10, 4, seed=1, start_step=7), 5) == base[7:12]
    seeds = [s for batch in base for _, s in batch]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("num_items, batch, world", [(12, 4, 2), (10, 4, 4), (3, 8, 2), (50, 6, 3)])
def test_sampler_ranks_partition_the_global_batch(num_items: int, batch: int, world: int) -> None:
    single = iter(StepBatchSampler(num_items, batch, seed=5))
    ranks = [iter(StepBatchSampler(num_items, batch, seed=5, rank=r, world_size=world)) for r in range(world)]
    for _ in range(15):
        parts = [next(r) for r in ranks]
        assert all(len(p) == batch // world for p in parts)
        assert [pair for p in parts for pair in p] == next(single)


def test_sampler_epochs_cover_items_before_repeating() -> None:
    sampler = StepBatchSampler(12, 4, seed=3)
    epochs = [[i for k in range(3 * e, 3 * e + 3) for i, _ in sampler.batch(k)] for e in range(3)]
    assert all(sorted(e) == list(range(12)) for e in epochs) and epochs[0] != epochs[1]
    uneven = StepBatchSampler(10, 4, seed=3)  # 2 steps per epoch; 2 items wait for a later epoch
    for e in range(4):
        items = [i for k in (2 * e, 2 * e + 1) for i, _ in uneven.batch(k)]
        assert len(set(items)) == 8
    big = StepBatchSampler(3, 8, seed=3)  # batch larger than the corpus: items repeat
    for k in range(4):
        counts = np.bincount([i for i, _ in big.batch(k)], minlength=3)
        assert counts.sum() == 8 and counts.min() >= 2
    with pytest.raises(ValueError, match="must be divisible by the number of processes"):
        StepBatchSampler(10, 6, seed=0, rank=0, world_size=4)
    with pytest.raises(ValueError, match="rank must be in"):
        StepBatchSampler(10, 4, seed=0, rank=2, world_size=2)


def test_train_loader_batches_ranks_and_resume(small_set) -> None:
    train, _, config = small_set
    ds = SegmentDataset(train, 16000, 4000, config, train=True, cache=True)
    it = iter(build_train_loader(ds, 4, seed=0))
    full = [next(it) for _ in range(4)]
    assert all(b.shape == (4, 1, 4000) for b in full)
    ranks = [iter(build_train_loader(ds, 4, seed=0, rank=r, world_size=2)) for r in range(2)]
    for step in range(4):
        assert torch.equal(torch.cat([next(r) for r in ranks]), full[step])
    resumed = iter(build_train_loader(ds, 4, seed=0, start_step=2, num_workers=1))
    assert torch.equal(next(resumed), full[2]) and torch.equal(next(resumed), full[3])
    whole = SegmentDataset(train, 16000, None, config, train=True)
    padded = next(iter(build_train_loader(whole, 3, seed=0)))
    assert padded.shape[:2] == (3, 1) and padded.shape[-1] == max(whole[p].shape[-1] for p in
                                                                   StepBatchSampler(len(whole), 3, 0).batch(0))
