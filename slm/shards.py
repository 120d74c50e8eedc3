"""Token shards: a corpus as codes or as continuous latents, what `codec tokenize` writes and the
language models read.

    OUT/index.json              {"format_version": 1, "kind": "codes" | "latents", "tokenizer": name,
                                 "tokenizer_fingerprint": ..., "token_spec": {...TokenSpec...},
                                 "shards": [{"file", "utterances", "frames"}],
                                 "latent_stats": {"mean": [D], "std": [D]}}        (latents only)
    OUT/shard-00000.safetensors one of
                                "codes" [sum of frames, Q] (int16, or int32 for codebooks over 2^15)
                                "latents" [sum of frames, D] float16: the codec's pre-quantization
                                         latents (``Tokenizer.encode_latent``, `codec tokenize --continuous`)
                                and
                                "offsets" [utterances + 1] int64: utterance i is rows offsets[i]:offsets[i+1]
                                metadata "utterances": JSON list of {"id", "duration", "text", "speaker"},
                                         "tokenizer_fingerprint": the codec that made the codes or latents,
                                         "latent_sums" (latents only): JSON {"frames": F, "sum": [D],
                                         "sum_sq": [D]}, float64 sums of the shard's stored (float16) values

An index without "kind" is one of codes (folders written before latent shards existed). Its
"latent_stats" merges the shards' sums, so no process reads the latents twice and torchrun ranks
need share nothing but the files: over all frames of all utterances, mean = sum / F and
std = sqrt(sum_sq / F - mean^2) (the population std), floored at LATENT_STD_FLOOR. ``LatentStats``
normalizes latents [..., D, T] with them, and denormalizes generated ones for
``Tokenizer.decode_latent``.

A shard is one file, written atomically: it exists whole or not at all, so an interrupted
tokenization resumes by skipping the shards that exist. Reading checks every count against
what the files hold before using it, and that a folder or shard holds the kind (codes or
latents) its reader expects.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from codec.config import config_from_dict, config_to_dict
from codec.errors import CodecError
from codec.files import atomic_write
from codec.tokens import TokenSpec

FORMAT_VERSION = 1
INDEX = "index.json"
Kind = Literal["codes", "latents"]
KINDS = ("codes", "latents")
LATENT_STD_FLOOR = 1e-5  # the least std of a latent dimension (a constant one would divide by zero)
_MADE_BY = {"codes": "`codec tokenize`", "latents": "`codec tokenize --continuous`"}


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
class LatentSums:
    """Frame count and per-dimension float64 sums of latents: what a shard records, and what merges."""

    frames: int
    sum: tuple[float, ...]
    sum_sq: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sum", tuple(float(v) for v in self.sum))
        object.__setattr__(self, "sum_sq", tuple(float(v) for v in self.sum_sq))
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 0:
            raise ValueError(f"a frame count must be a whole number >= 0, got {self.frames!r}")
        if not self.sum or len(self.sum) != len(self.sum_sq):
            raise ValueError("latent sums need one sum and one sum of squares per dimension")
        if not all(math.isfinite(v) for v in (*self.sum, *self.sum_sq)) or min(self.sum_sq) < 0:
            raise ValueError("latent sums must be finite, and sums of squares >= 0")

    @classmethod
    def of(cls, latents: torch.Tensor) -> LatentSums:
        """Sums of latents [frames, D] (in float64)."""
        x = latents.to(torch.float64)
        return cls(x.shape[0], x.sum(0).tolist(), x.square().sum(0).tolist())

    def __add__(self, other: LatentSums) -> LatentSums:
        if len(self.sum) != len(other.sum):
            raise ValueError(f"cannot add sums of {len(self.sum)} and {len(other.sum)} dimensions")
        return LatentSums(self.frames + other.frames, [a + b for a, b in zip(self.sum, other.sum)],
                          [a + b for a, b in zip(self.sum_sq, other.sum_sq)])


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean and std of a folder's latents; ``normalize`` takes latents [..., D, T]
    (D on dim -2) to zero mean and unit variance, ``denormalize`` takes them back."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError("latent statistics need one mean and one std per dimension")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or not min(self.std) > 0:
            raise ValueError("latent means must be finite and stds finite and positive")

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def from_sums(cls, sums: LatentSums, floor: float = LATENT_STD_FLOOR) -> LatentStats:
        """Mean and population std (at least ``floor``) of the frames the sums cover."""
        if sums.frames < 1:
            raise ValueError("latent statistics need at least one frame")
        mean = [s / sums.frames for s in sums.sum]
        std = [max(math.sqrt(max(0.0, q / sums.frames - m * m)), floor) for q, m in zip(sums.sum_sq, mean)]
        return cls(mean, std)

    def _columns(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 2 or x.shape[-2] != self.dim:
            raise ValueError(f"latents must be [..., {self.dim}, T], got {tuple(x.shape)}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mean = torch.tensor(self.mean, dtype=dtype, device=x.device)[:, None]
        return mean, torch.tensor(self.std, dtype=dtype, device=x.device)[:, None]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._columns(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._columns(x)
        return x * std + mean


@dataclass(frozen=True)
class ShardIndex:
    tokenizer: str  # the tokenizer's name
    tokenizer_fingerprint: str
    token_spec: TokenSpec
    shards: tuple[ShardEntry, ...]
    kind: Kind = "codes"
    latent_stats: LatentStats | None = None  # of latents: their per-dimension mean and std

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.kind == "latents") != (self.latent_stats is not None):
            raise ValueError("latent statistics belong to latents, and latents need them")
        dim = self.token_spec.latent_dim
        if self.latent_stats is not None and dim is not None and self.latent_stats.dim != dim:
            raise ValueError(f"latent statistics of {self.latent_stats.dim} dimensions, but the latents have {dim}")

    @property
    def num_utterances(self) -> int:
        return sum(s.utterances for s in self.shards)

    @property
    def num_frames(self) -> int:
        return sum(s.frames for s in self.shards)

    @property
    def hours(self) -> float:
        return self.num_frames / self.token_spec.frame_rate / 3600

    @property
    def width(self) -> int:
        """Rows of an utterance's tensor: Q codebook levels, or D latent dimensions."""
        return self.token_spec.n_q if self.latent_stats is None else self.latent_stats.dim


@dataclass(frozen=True)
class ShardInfo:
    """What a shard holds, from its header and offsets alone (``inspect_shard``)."""

    entry: ShardEntry
    kind: Kind
    width: int  # Q or D
    latent_sums: LatentSums | None  # latents only


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


def write_shard(path: Path, items: list[tuple[Utterance, torch.Tensor]], fingerprint: str,
                force: bool = False, kind: Kind = "codes") -> ShardEntry:
    """Write utterances with their codes [Q, T_i] (or with ``kind="latents"``, their latents
    [D, T_i], stored as float16 with their sums), made by the tokenizer ``fingerprint``, as one
    shard file, atomically."""
    if not items:
        raise ValueError("a shard needs at least one utterance")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    tensors = [x for _, x in items]
    if any(x.dim() != 2 or x.shape[0] != tensors[0].shape[0] for x in tensors):
        raise ValueError(f"every utterance's {kind} must be [rows, T] with the same rows")
    lengths = torch.tensor([x.shape[-1] for x in tensors])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    metadata = {"utterances": json.dumps([asdict(u) for u, _ in items]), "tokenizer_fingerprint": fingerprint}
    if kind == "codes":
        top = max((int(x.max()) for x in tensors if x.numel()), default=0)
        dtype = torch.int16 if top < 2**15 else torch.int32
        data = torch.cat([x.t() for x in tensors]).to(dtype).contiguous()
    else:
        data = torch.cat([x.detach().t().float().cpu() for x in tensors]).to(torch.float16).contiguous()
        bad = ~torch.isfinite(data).all(1)
        if bad.any():
            row = int(bad.nonzero()[0])
            utterance = items[int((offsets[1:] <= row).sum())][0].id
            raise CodecError(f"The latents of {utterance} are not finite in float16 (beyond +-65504); "
                             "they cannot be stored.")
        metadata["latent_sums"] = json.dumps(asdict(LatentSums.of(data)))
    with atomic_write(path, force) as tmp:
        save_file({kind: data, "offsets": offsets}, str(tmp), metadata=metadata)
    return ShardEntry(path.name, len(items), int(offsets[-1]))


def _load(path: Path, kind: Kind, width: int | None, fingerprint: str | None, data: bool):
    """(info, utterances, offsets, the codes or latents if ``data``) of a checked shard."""
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            held = [k for k in KINDS if k in f.keys()]
            if len(held) != 1:
                raise ValueError("it holds neither codes nor latents" if not held else "it holds codes and latents")
            if held[0] != kind:
                raise CodecError(f"Shard {path} holds {held[0]} (made by {_MADE_BY[held[0]]}), not the {kind} "
                                 f"expected here (made by {_MADE_BY[kind]}).")
            piece = f.get_slice(kind)
            shape, dtype = list(piece.get_shape()), piece.get_dtype()
            offsets = f.get_tensor("offsets")
            values = f.get_tensor(kind) if data else None
        if fingerprint is not None and metadata.get("tokenizer_fingerprint") != fingerprint:
            raise CodecError(f"Token shard {path} was made by another tokenizer (fingerprint "
                             f"{metadata.get('tokenizer_fingerprint')}, not {fingerprint}).")
        entries = json.loads(metadata["utterances"])
        utterances = [Utterance(**e) for e in entries]
        sums = LatentSums(**json.loads(metadata["latent_sums"])) if kind == "latents" else None
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CodecError(f"Token shard {path} cannot be read ({' '.join(str(e).split())[:200]}).") from None
    expected_dtypes = ("F16",) if kind == "latents" else ("I16", "I32", "I64")
    ok = (len(shape) == 2 and dtype in expected_dtypes and offsets.dim() == 1 and not offsets.is_floating_point()
          and len(offsets) == len(utterances) + 1 and (width is None or shape[1] == width)
          and int(offsets[0]) == 0 and int(offsets[-1]) == shape[0] and bool((offsets[1:] >= offsets[:-1]).all())
          and (sums is None or (sums.frames == shape[0] and len(sums.sum) == shape[1])))
    if not ok:
        raise CodecError(f"Token shard {path} is inconsistent: its offsets, utterances, {kind} and statistics "
                         "do not agree.")
    info = ShardInfo(ShardEntry(path.name, len(utterances), shape[0]), kind, shape[1], sums)
    return info, utterances, offsets, values


def inspect_shard(path: Path, kind: Kind = "codes", width: int | None = None,
                  fingerprint: str | None = None) -> ShardInfo:
    """What a shard of ``kind`` holds (``width`` rows per frame and made by ``fingerprint``, if
    given), checked, without reading its codes or latents; CodecError naming it if it is broken,
    another tokenizer's or of the other kind."""
    return _load(Path(path), kind, width, fingerprint, data=False)[0]


def read_shard(path: Path, n_q: int | None = None, fingerprint: str | None = None, kind: Kind = "codes",
               latent_dim: int | None = None) -> list[tuple[Utterance, torch.Tensor]]:
    """(utterance, codes [Q, T] int64) of every utterance in a shard, or with ``kind="latents"``
    (utterance, latents [D, T] float32); checks Q = ``n_q`` or D = ``latent_dim`` and the tokenizer
    ``fingerprint``, if given. CodecError naming the file if it is broken, another's or of the
    other kind."""
    if (kind == "codes" and latent_dim is not None) or (kind == "latents" and n_q is not None):
        raise ValueError("n_q is for codes, latent_dim for latents")
    _, utterances, offsets, values = _load(Path(path), kind, n_q if kind == "codes" else latent_dim, fingerprint,
                                           data=True)
    values = values.long() if kind == "codes" else values.float()
    return [(u, values[int(a):int(b)].t()) for u, a, b in zip(utterances, offsets[:-1], offsets[1:])]


def write_index(out: Path, index: ShardIndex) -> None:
    document = {"format_version": FORMAT_VERSION, "kind": index.kind, "tokenizer": index.tokenizer,
                "tokenizer_fingerprint": index.tokenizer_fingerprint,
                "token_spec": config_to_dict(index.token_spec), "shards": [asdict(s) for s in index.shards]}
    if index.latent_stats is not None:
        document["latent_stats"] = {"mean": list(index.latent_stats.mean), "std": list(index.latent_stats.std)}
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
        kind = document.get("kind", "codes")
        stats = document.get("latent_stats")
        stats = None if stats is None else LatentStats(stats["mean"], stats["std"])
        index = ShardIndex(str(document["tokenizer"]), str(document["tokenizer_fingerprint"]), spec, shards,
                           kind, stats)
    except FileNotFoundError:
        raise CodecError(f"{out} holds no token shards (no {INDEX}); make them with `codec tokenize`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CodecError(f"{path} is not a valid shard index ({' '.join(str(e).split())[:200]}).") from None
    if any(not math.isfinite(s.frames) or s.frames < 0 or s.utterances < 1 for s in shards):
        raise CodecError(f"{path} lists shards with impossible counts.")
    return index


def load_utterances(out: Path, kind: Kind | None = None) -> tuple[ShardIndex, list[tuple[Utterance, torch.Tensor]]]:
    """Every utterance of a shard folder with its codes [Q, T] int64 or latents [D, T] float32 (as
    ``index.kind`` says; CodecError if that is not ``kind``, where given), checked against the index."""
    index = read_index(out)
    if kind is not None and index.kind != kind:
        raise CodecError(f"{out} holds {index.kind} (made by {_MADE_BY[index.kind]}), not the {kind} expected "
                         f"here (made by {_MADE_BY[kind]}).")
    width = {"n_q": index.width} if index.kind == "codes" else {"latent_dim": index.width}
    items = []
    for entry in index.shards:
        shard = read_shard(Path(out) / entry.file, fingerprint=index.tokenizer_fingerprint, kind=index.kind, **width)
        if len(shard) != entry.utterances or sum(c.shape[-1] for _, c in shard) != entry.frames:
            raise CodecError(f"Token shard {Path(out) / entry.file} does not hold what {INDEX} says.")
        items += shard
    return index, items
