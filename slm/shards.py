"""Token shards: a corpus as codes, what `codec tokenize` writes and the language models read.

    OUT/index.json              {"format_version": 1, "tokenizer": name, "tokenizer_fingerprint": ...,
                                 "token_spec": {...TokenSpec...}, "shards": [{"file", "utterances", "frames"}]}
    OUT/shard-00000.safetensors "codes" [sum of frames, Q] (int16, or int32 for codebooks over 2^15)
                                "offsets" [utterances + 1] int64: utterance i is codes[offsets[i]:offsets[i+1]]
                                metadata "utterances": JSON list of {"id", "duration", "text", "speaker"},
                                         "tokenizer_fingerprint": the codec that made the codes

A shard is one file, written atomically: it exists whole or not at all, so an interrupted
tokenization resumes by skipping the shards that exist. Reading checks every count against
what the files hold before using it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from codec.config import config_from_dict, config_to_dict
from codec.errors import CodecError
from codec.files import atomic_write
from codec.tokens import TokenSpec

FORMAT_VERSION = 1
INDEX = "index.json"


@dataclass(frozen=True)
class Utterance:
    id: str
    duration: float  # seconds
    text: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class ShardEntry:
    file: str
    utterances: int
    frames: int


@dataclass(frozen=True)
class ShardIndex:
    tokenizer: str  # the tokenizer's name
    tokenizer_fingerprint: str
    token_spec: TokenSpec
    shards: tuple[ShardEntry, ...]

    @property
    def num_utterances(self) -> int:
        return sum(s.utterances for s in self.shards)

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.shards)

    @property
    def hours(self) -> float:
        return self.num_frames / self.token_spec.frame_rate / 3600


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


def write_shard(path: Path, items: list[tuple[Utterance, torch.Tensor]], fingerprint: str,
                force: bool = False) -> ShardEntry:
    """Write utterances with their codes [Q, T_i], made by the tokenizer ``fingerprint``, as one
    shard file, atomically."""
    if not items:
        raise ValueError("a shard needs at least one utterance")
    codes = [c for _, c in items]
    top = max(int(c.max()) for c in codes if c.numel())
    dtype = torch.int16 if top < 2**15 else torch.int32
    lengths = torch.tensor([c.shape[-1] for c in codes])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    tensors = {"codes": torch.cat([c.t() for c in codes]).to(dtype).contiguous(), "offsets": offsets}
    metadata = {"utterances": json.dumps([asdict(u) for u, _ in items]), "tokenizer_fingerprint": fingerprint}
    with atomic_write(path, force) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return ShardEntry(path.name, len(items), int(offsets[-1]))


def read_shard(path: Path, n_q: int | None = None,
               fingerprint: str | None = None) -> list[tuple[Utterance, torch.Tensor]]:
    """(utterance, codes [Q, T] int64) of every utterance in a shard (made by the tokenizer
    ``fingerprint``, if given); CodecError naming the file if it is broken or another's."""
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            codes, offsets = f.get_tensor("codes"), f.get_tensor("offsets")
        if fingerprint is not None and metadata.get("tokenizer_fingerprint") != fingerprint:
            raise CodecError(f"Token shard {path} was made by another tokenizer (fingerprint "
                             f"{metadata.get('tokenizer_fingerprint')}, not {fingerprint}).")
        entries = json.loads(metadata["utterances"])
        utterances = [Utterance(**e) for e in entries]
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as e:
        raise CodecError(f"Token shard {path} cannot be read ({' '.join(str(e).split())[:200]}).") from None
    ok = (codes.dim() == 2 and offsets.dim() == 1 and len(offsets) == len(utterances) + 1
          and (n_q is None or codes.shape[1] == n_q) and int(offsets[0]) == 0
          and int(offsets[-1]) == codes.shape[0] and bool((offsets[1:] >= offsets[:-1]).all()))
    if not ok:
        raise CodecError(f"Token shard {path} is inconsistent: its offsets, utterances and codes do not agree.")
    codes = codes.long()
    return [(u, codes[int(a):int(b)].t()) for u, a, b in zip(utterances, offsets[:-1], offsets[1:])]


def write_index(out: Path, index: ShardIndex) -> None:
    document = {"format_version": FORMAT_VERSION, "tokenizer": index.tokenizer,
                "tokenizer_fingerprint": index.tokenizer_fingerprint,
                "token_spec": config_to_dict(index.token_spec), "shards": [asdict(s) for s in index.shards]}
    with atomic_write(out / INDEX, force=True) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")


def read_index(out: Path) -> ShardIndex:
    """The index of a shard folder; CodecError naming it if missing or invalid."""
    path = Path(out) / INDEX
    try:
        document = json.loads(path.read_text())
        if document.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {document.get('format_version')!r}, this toolkit reads {FORMAT_VERSION}")
        spec = config_from_dict(TokenSpec, document["token_spec"], "token_spec")
        shards = tuple(config_from_dict(ShardEntry, s, "shard") for s in document["shards"])
        index = ShardIndex(str(document["tokenizer"]), str(document["tokenizer_fingerprint"]), spec, shards)
    except FileNotFoundError:
        raise CodecError(f"{out} holds no token shards (no {INDEX}); make them with `codec tokenize`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CodecError(f"{path} is not a valid shard index ({' '.join(str(e).split())[:200]}).") from None
    if any(not math.isfinite(s.frames) or s.frames < 0 or s.utterances < 1 for s in shards):
        raise CodecError(f"{path} lists shards with impossible counts.")
    return index


def load_utterances(out: Path) -> tuple[ShardIndex, list[tuple[Utterance, torch.Tensor]]]:
    """Every utterance of a shard folder with its codes [Q, T], checked against the index."""
    index = read_index(out)
    items = []
    for entry in index.shards:
        shard = read_shard(Path(out) / entry.file, index.token_spec.n_q, index.tokenizer_fingerprint)
        if len(shard) != entry.utterances or sum(c.shape[-1] for _, c in shard) != entry.frames:
            raise CodecError(f"Token shard {Path(out) / entry.file} does not hold what {INDEX} says.")
        items += shard
    return index, items
