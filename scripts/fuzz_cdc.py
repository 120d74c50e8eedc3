"""Fuzz the .cdc reader: every mutated file must give one CodecError (or decode), quickly.

    python scripts/fuzz_cdc.py [--cases 20000] [--seed 0] [--out fuzz-cdc]

Seeds: valid files of several shapes (one piece; several channels and codebooks, a float64 frame
rate and a text fingerprint; a segmented, RMS-normalised stereo file), each in format version 2
(what encode_cdc writes) and version 1 (JSON), and tests/data/arctic_slt_a0009_3kbps.cdc (version 1)
with its version-2 twin. Mutations: bit flips, byte changes, truncations, insertions, deletions,
splices of two files; version-1 header fields replaced by hostile JSON values (huge, negative,
float, NaN, string, nested); version-2 binary fields forged (counts up to all ones of their width,
flags toggled, lengths and counts that disagree with the bytes after them, non-UTF-8 names, odd
frame rates, headers cut short). Most get their checksum recomputed, so that the parser must look
past it, and a forged header that is self-consistent gets the payload length it implies, so that
the codes are read too. Reports the cases run, the outcomes (and per format version, how many
decoded), crashes (any exception but CodecError; the input is saved under --out), the slowest case
(saved too) and the peak memory of one case (tracemalloc). Exit status 1 on a crash.
See docs/fuzzing.md; tests/test_cdc_fuzz.py runs a short, deterministic version in CI.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import resource
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from codec.audio.bitstream import CdcHeader, decode_cdc, encode_cdc  # noqa: E402
from codec.audio.segments import SegmentGrid  # noqa: E402
from codec.errors import CodecError  # noqa: E402
from tests.cdc_forgery import (  # noqa: E402
    FIELDS, V2_FLAGS, V2_INTS, as_v1, fit_payload, join, join_v2, split, split_v2, with_crc,
)

RAW_JSON = ["1" + "0" * 400, "-" + "1" * 400, "1e999", "-1e999", "1e-999", "5e-324", "1" + "0" * 5000, "NaN",
            "Infinity", "[" * 3000 + "]" * 3000, "{" * 50, '"\\ud800"', "[" + "2," * 2000 + "2]", "-0.0"]
V2_EDGES = [0, 1, 2, 64, 65, 255, 256, 1024, 1025, 2**16 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**40 + 1, 2**48,
            2**48 + 1, 2**63, 2**64 - 1, -1]
MAX_FITTED_BYTES = 1 << 20  # payloads fitted to a forged header, at most


def _file(header: CdcHeader, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (header.channels, header.num_frames)
    codes = np.stack([rng.integers(0, k, size=shape) for k in header.codebook_sizes], axis=1)
    return encode_cdc(header, torch.from_numpy(codes))


def seed_files() -> dict[str, bytes]:
    """Valid files: one piece, multi-channel, a segmented normalised stereo file, the bundled one."""
    mono = CdcHeader(model="tiny-16k", model_fingerprint="ab" * 8, sample_rate=16000, frame_rate=50.0,
                     original_sample_rate=44100, channels=1, num_samples=8820, num_frames=10,
                     codebook_sizes=(1024, 1024))
    many = replace(mono, channels=3, codebook_sizes=(2, 3, 1000, 65536, 2**32), num_samples=441, num_frames=53,
                   frame_rate=16000 / 3, model_fingerprint="not hex")  # a float64 rate, a text fingerprint
    grid = SegmentGrid(960, 640, 3000)  # 3000 samples at 16 kHz are 8269 at 44.1 kHz
    segmented = replace(mono, channels=2, num_samples=8269, segment_samples=grid.segment,
                        segment_stride=grid.stride, model_num_samples=grid.num_samples,
                        num_frames=grid.num_frames(320), normalized=True,
                        scales=tuple(float(np.float32(0.1 * (i + 1))) for i in range(2 * grid.num_segments)))
    seeds = {"mono": _file(mono, 0), "many": _file(many, 1), "segmented": _file(segmented, 2)}
    seeds.update({f"{name}-v1": as_v1(data) for name, data in list(seeds.items())})
    bundled = REPO / "tests" / "data" / "arctic_slt_a0009_3kbps.cdc"
    if bundled.exists():
        seeds["bundled-v1"] = bundled.read_bytes()
        seeds["bundled"] = encode_cdc(*decode_cdc(seeds["bundled-v1"]))
    return seeds


def _hostile(rng: random.Random) -> object:
    return rng.choice([
        lambda: rng.randint(-(2**70), 2**70), lambda: rng.choice([0, -1, 1, 2**31, 2**32, 2**48, 2**63, 2**64]),
        lambda: rng.randint(0, 1 << rng.randint(1, 50)), lambda: rng.randint(0, 1 << rng.randint(1, 50)),
        lambda: 10 ** rng.randint(1, 400) * rng.choice([1, -1]), lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.choice([float("nan"), float("inf"), -float("inf"), 1e-320, 0.5, 50.0]),
        lambda: "".join(rng.choice("ab0 {}\"\\\n") for _ in range(rng.randint(0, 12))), lambda: None,
        lambda: rng.choice([True, False]), lambda: [rng.randint(-3, 2**33) for _ in range(rng.randint(0, 6))],
        lambda: [[rng.randint(0, 9)]] * rng.randint(0, 3), lambda: {"a": [1, {"b": None}]},
        lambda: [2] * rng.randint(1025, 3000),
    ])()


def _v2_int(rng: random.Random) -> int:
    return rng.choice([lambda: rng.choice(V2_EDGES), lambda: rng.randint(0, 1 << rng.randint(1, 64)),
                       lambda: rng.randint(-(2**70), 2**70)])()


def mutate_v2(data: bytes, rng: random.Random) -> bytes:
    """Version-2 binary header fields forged, the checksum right (the payload fitted half the time)."""
    raw, rest = split_v2(data)
    kind = rng.choice(["ints", "ints", "flags", "lengths", "float", "names", "cut"])
    if kind == "ints":  # huge, zero, negative (all ones), just out of range
        for name in rng.sample(sorted(V2_INTS), rng.randint(1, 4)):
            raw[name] = _v2_int(rng)
    elif kind == "flags":  # other flags move or widen every field after them
        raw["flags"] ^= rng.choice([*V2_FLAGS.values(), 0x40, 0x80, rng.randint(1, 255)])
    elif kind == "lengths":  # a length or count that does not match the bytes after it
        name = rng.choice(["fingerprint_length", "model_length", "n_q", "sizes"])
        if name == "sizes":
            raw["sizes"] = [_v2_int(rng) for _ in range(rng.choice([0, 1, 2, 5, 1025]))]
        else:
            actual = {"fingerprint_length": len(raw["fingerprint"]), "model_length": len(raw["model"]),
                      "n_q": raw["n_q"]}[name]
            raw[name] = max(0, actual + rng.choice([-3, -2, -1, 1, 2, 3, 255, 1024, 65535]))
    elif kind == "float":
        raw["frame_rate"] = rng.choice([float("nan"), float("inf"), -float("inf"), 1e-320, 1e300, -50.0, 0.0,
                                        0.01, rng.uniform(0, 2e6)])
    elif kind == "names":
        raw[rng.choice(["fingerprint", "model"])] = rng.choice(
            [rng.randbytes(rng.randint(0, 255)), b"\xff\xfe", b"\xed\xa0\x80", "é".encode()[:1], bytes(300)])
    else:  # the header cut short at any byte
        forged = join_v2(raw, rest)
        return with_crc(forged[:rng.randint(5, len(forged) - len(rest) - 5)])
    forged = join_v2(raw, rest)
    return fit_payload(forged, MAX_FITTED_BYTES) if rng.random() < 0.5 else forged


def mutate(data: bytes, seeds: list[bytes], rng: random.Random) -> bytes:
    """One mutation of a valid file, its checksum usually recomputed."""
    kind = rng.choice(["flip", "byte", "truncate", "insert", "delete", "splice", "field", "field", "field",
                       "raw", "drop", "add", "grid", "v2", "v2", "v2", "v2"])
    if kind == "v2":
        return mutate_v2(data if data[4] == 2 else encode_cdc(*decode_cdc(data)), rng)
    body = bytearray(data[:-4])
    at = rng.randrange(len(body) + 1)
    if kind in ("field", "raw", "drop", "add", "grid"):  # JSON fields: a version-1 file
        meta, rest = split(data)
        field = rng.choice(FIELDS)
        if kind == "grid":  # a segment grid of any size and overlap, lengths to match or not
            segment = rng.randint(1, 1 << rng.randint(1, 20))
            log_uniform = lambda: rng.randint(1, 1 << rng.randint(1, 44))  # noqa: E731
            meta.update(segment_samples=segment, segment_stride=rng.randint(1, segment),
                        model_num_samples=log_uniform(), normalized=rng.random() < 0.5)
            for name in rng.sample(["num_samples", "num_frames", "original_sample_rate"], rng.randint(0, 3)):
                meta[name] = log_uniform()
            text = json.dumps(meta)
        elif kind == "field":
            for name in [field] + rng.sample(FIELDS, rng.randint(0, 3)):
                meta[name] = _hostile(rng)
            text = json.dumps(meta)
        elif kind == "raw":
            text = json.dumps({**meta, field: "@@"}).replace('"@@"', rng.choice(RAW_JSON))
        elif kind == "drop":
            text = json.dumps({k: v for k, v in meta.items() if k != field})
        else:
            text = json.dumps({**meta, rng.choice(["extra", "scales", ""]): 1})
        forged = join(text, rest)
        return fit_payload(forged, MAX_FITTED_BYTES) if rng.random() < 0.5 else forged
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(8 * len(body))
            body[bit // 8] ^= 1 << (bit % 8)
    elif kind == "byte":
        body[min(at, len(body) - 1)] = rng.choice([0, 0xFF, 0x7F, 0x80, ord("9"), ord('"'), ord("-")])
    elif kind == "truncate":
        del body[at:]
    elif kind == "insert":
        body[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == "delete":
        del body[at:at + rng.randint(1, 64)]
    else:  # splice: the start of this file, the rest of another
        other = rng.choice(seeds)
        body = body[:at] + other[rng.randrange(len(other)):-4]
    return with_crc(bytes(body)) if rng.random() < 0.8 else bytes(body) + data[-4:]


def outcome(data: bytes) -> str:
    """'decoded', or the CodecError's kind ('has an invalid header', ...); raises anything else."""
    try:
        header, codes = decode_cdc(data, source="Input file 'x.cdc'")
    except CodecError as e:
        text = str(e)
        if not text.startswith("Input file 'x.cdc' ") or "\n" in text:
            raise AssertionError(f"not one sentence naming the file: {text!r}") from None
        return re.sub(r"\d+", "N", re.sub(r"\s*\(.*", "", text[len("Input file 'x.cdc' "):]).rstrip("."))
    back, back_codes = decode_cdc(encode_cdc(header, codes))  # whatever is read can be written
    if back != header or not torch.equal(back_codes, codes):
        raise AssertionError("a file read does not round-trip")
    return "decoded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-cdc"), help="crashing and slowest inputs go here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    seeds = seed_files()
    pool = list(seeds.values())
    outcomes: collections.Counter[str] = collections.Counter()
    by_version: collections.Counter[tuple[str, bool]] = collections.Counter()  # (format version, decoded)
    crashes: list[tuple[int, str]] = []
    slowest, slowest_case, slowest_data, peak = 0.0, -1, b"", 0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.perf_counter()
    for case in range(args.cases):
        data = mutate(rng.choice(pool), pool, rng)
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        version = f"version {data[4]}" if data[:4] == b"CDCF" and len(data) > 4 and data[4] in (1, 2) else "other"
        try:
            outcomes[kind := outcome(data)] += 1
            by_version[version, kind == "decoded"] += 1
        except Exception as e:  # noqa: BLE001 - a crash is what we look for
            crashes.append((case, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"))
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"crash-{case}.cdc").write_bytes(data)
        elapsed = time.perf_counter() - t0
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        if elapsed > slowest:
            slowest, slowest_case, slowest_data = elapsed, case, data
    total = time.perf_counter() - start
    tracemalloc.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slowest.cdc").write_bytes(slowest_data)
    print(f"cases: {args.cases} (seed {args.seed}; seed files: {', '.join(seeds)}) in {total:.1f} s")
    for kind, count in outcomes.most_common():
        print(f"  {count:7d}  {kind}")
    for version in ("version 1", "version 2", "other"):
        cases = by_version[version, True] + by_version[version, False]
        print(f"  {version}: {cases} cases, {by_version[version, True]} decoded")
    print(f"crashes: {len(crashes)}")
    for case, what in crashes[:20]:
        print(f"  case {case}: {what}  ({args.out / f'crash-{case}.cdc'})")
    print(f"slowest case: {slowest * 1000:.1f} ms (case {slowest_case}, {len(slowest_data)} bytes, "
          f"{args.out / 'slowest.cdc'})")
    print(f"peak memory of one case: {peak / 1e6:.1f} MB (tracemalloc); "
          f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"({rss_before:.0f} MB before the first case: Python, torch and the seeds)")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
