"""A speech corpus -> token shards with an audio codec (what `codec tokenize` runs).

Sources: a folder of audio (recursive; a ``.txt`` next to a clip is its transcript), a JSONL
manifest ({"path", optional "id", "text", "speaker"}), or a training recipe (its corpus, train
and validation clips). Utterances are sorted by id and cut into shards of ``shard_size``; each
shard is coded on its own (by one of ``workers`` processes, or under torchrun by rank
``shard % world_size``), so an interrupted run resumes by skipping the shards that exist. The
index is written last, by one process, once every shard is there.

With ``continuous``, shards hold the codec's pre-quantization latents instead of codes: each
utterance is downmixed and resampled to the codec's rate exactly as for codes, then its latents
come from one ``encode_latent`` pass over the whole utterance (no chunks or segments: a model
that codes RMS-normalised segments is refused, its latents of a whole utterance would not be
what it decodes). The index carries their per-dimension mean and std, merged from the sums each
shard records.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from codec.errors import CodecError
from codec.files import read_manifest
from codec.jobs import run_jobs

from .shards import (Kind, LatentStats, LatentSums, ShardIndex, Utterance, inspect_shard, shard_name, write_index,
                     write_shard)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


@dataclass(frozen=True)
class Source:
    """One utterance to tokenize."""

    id: str
    path: Path
    text: str | None = None
    speaker: str | None = None


def find_sources(data: Path, recipe_work_dir: Path | None = None, data_dir: str | None = None) -> list[Source]:
    """The utterances of a folder, a JSONL manifest or a recipe (.yaml, its corpus in ``data_dir``),
    sorted by id."""
    if not data.exists():
        raise CodecError(f"{data} does not exist.")
    if data.is_dir():
        sources = [Source(str(p.relative_to(data).with_suffix("")), p, _transcript(p))
                   for p in sorted(data.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES]
    elif data.suffix in (".yaml", ".yml"):
        sources = _recipe_sources(data, recipe_work_dir or data.parent, data_dir)
    else:
        sources = _manifest_sources(data)
    if not sources:
        raise CodecError(f"No audio found in {data}.")
    ids = [s.id for s in sources]
    if len(set(ids)) != len(ids):
        raise CodecError(f"{data} names some utterances twice (ids must be unique).")
    return sorted(sources, key=lambda s: s.id)


def _transcript(audio: Path) -> str | None:
    text = audio.with_suffix(".txt")
    return text.read_text(errors="replace").strip() if text.is_file() else None


def _manifest_sources(path: Path) -> list[Source]:
    return [Source(str(e.get("id") or Path(e["path"]).with_suffix("")), path.parent / e["path"], e.get("text"),
                   e.get("speaker")) for e in read_manifest(path)]


def _recipe_sources(recipe: Path, work_dir: Path, data_dir: str | None) -> list[Source]:
    """Train and validation clips of a recipe's corpus (prepared as for training)."""
    from codec.data import prepare_manifests
    from codec.train.config import load_train_config, read_recipe

    config = load_train_config(read_recipe(recipe), data_dir=data_dir, source=recipe)
    if not hasattr(config, "data") or not hasattr(config.data, "corpus"):
        raise CodecError(f"Recipe {recipe} does not describe a speech corpus (task {config.task!r}).")
    train, valid = prepare_manifests(config.data, work_dir / "manifests")
    sources = []
    for cut in [*train, *valid]:
        supervision = cut.supervisions[0] if cut.supervisions else None
        sources.append(Source(cut.id, Path(cut.recording.sources[0].source),
                              supervision.text if supervision else None, supervision.speaker if supervision else None))
    return sources


def encode_latents(codec, audio) -> torch.Tensor:
    """An utterance's latents [D, T] float32 on the CPU: downmixed to mono and resampled to the
    codec's rate as ``encode_audio(..., downmix=True)`` does, then one ``encode_latent`` pass."""
    from codec.audio.compress import _ModelInput  # the very input encode_audio codes

    _check_latent_codec(codec)
    x = torch.cat(list(_ModelInput(codec, audio, downmix=True)), dim=-1)  # [1, model channels, n]
    with torch.inference_mode():
        return codec.encode_latent(x.to(next(codec.parameters()).device))[0].float().cpu()


def _check_latent_codec(codec) -> None:
    if getattr(codec.config, "normalize", False):
        raise CodecError("This codec codes RMS-normalised segments: its latents of whole utterances are not what "
                         "it decodes, so it cannot make latent shards; tokenize without --continuous.")
    if codec.config.token_spec.latent_dim is None:
        raise CodecError("This codec exposes no continuous latent; tokenize without --continuous.")


def _tokenize_shard(number: int, groups: list[list[Source]], out: Path, model: str | None, device: str,
                    n_q: int | None, continuous: bool = False) -> None:
    """Code the utterances of shard ``number`` (mono), or take their latents, and write it (a
    worker-process job)."""
    from codec.audio import model_fingerprint
    from codec.audio.compress import encode_audio
    from codec.audio.io import read_audio

    codec = _codec(model, device)  # on the threads the CLI or run_jobs chose (codec.devices.apply_threads)
    items = []
    for source in groups[number]:
        try:
            audio = read_audio(source.path)
        except CodecError as e:
            print(f"warning: skipped {source.id}: {e}", flush=True)
            continue
        if continuous:
            values = encode_latents(codec, audio)  # [D, T]
        else:
            values = encode_audio(codec, audio, n_q, downmix=True).codes[0]  # [Q, T]
        items.append((Utterance(source.id, audio.duration, source.text, source.speaker), values))
    if items:
        write_shard(out / shard_name(number), items, model_fingerprint(codec), kind=_kind(continuous))


def _kind(continuous: bool) -> Kind:
    return "latents" if continuous else "codes"


@functools.lru_cache(maxsize=2)
def _codec(model: str | None, device: str):
    from codec.audio import from_pretrained
    from codec.devices import parse_device

    return from_pretrained(model, parse_device(device))


def tokenize(sources: list[Source], out: Path, model: str | None = None, device: str = "cpu", n_q: int | None = None,
             shard_size: int = 500, workers: int = 1, advance=lambda: None, continuous: bool = False) -> ShardIndex:
    """Code ``sources`` (or with ``continuous``, take their latents) into shards in ``out``
    (skipping shards already there) and write the index."""
    from codec.audio import model_fingerprint
    from codec.audio.registry import DEFAULT_MODEL

    if continuous and n_q is not None:
        raise CodecError("--n-q does not apply to --continuous: latents are taken before quantization.")
    kind = _kind(continuous)
    codec = _codec(model, device)
    fingerprint = model_fingerprint(codec)
    if continuous:
        _check_latent_codec(codec)
        spec = codec.config.token_spec
        width = spec.latent_dim
    else:
        spec = codec.config.token_spec.with_num_codebooks(n_q or codec.config.token_spec.n_q)
        width = spec.n_q
    for done in sorted(out.glob("shard-*.safetensors")):  # resuming: shards must be this codec's, this kind, width
        inspect_shard(done, kind, width, fingerprint)
    out.mkdir(parents=True, exist_ok=True)
    groups = [sources[i:i + shard_size] for i in range(0, len(sources), shard_size)]
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    mine = [i for i in range(len(groups)) if i % world == rank and not (out / shard_name(i)).is_file()]
    for _ in range(len(groups) - len(mine)):
        advance()
    job = functools.partial(_tokenize_shard, groups=groups, out=out, model=model, device=device,
                            n_q=None if continuous else spec.n_q, continuous=continuous)
    failures = run_jobs([(i,) for i in mine], job, workers, advance)
    if failures:
        raise CodecError(f"Shard {failures[0][0][0]} failed: {failures[0][1]}")
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()
    name = Path(model).name if model and Path(model).exists() else (model or DEFAULT_MODEL)
    infos = [inspect_shard(out / shard_name(i), kind, width, fingerprint)
             for i in range(len(groups)) if (out / shard_name(i)).is_file()]
    if not infos:
        raise CodecError(f"No utterance of {len(sources)} could be read; nothing was tokenized.")
    stats = None
    if continuous:
        sums = functools.reduce(LatentSums.__add__, [info.latent_sums for info in infos])
        stats = LatentStats.from_sums(sums)
    index = ShardIndex(str(name), fingerprint, spec, tuple(info.entry for info in infos), kind, stats)
    if rank == 0:
        write_index(out, index)
    return index
