"""Peak memory and time of coding a long recording: streamed from and to disk vs in memory.

Synthesises a mono 16 kHz WAV (noise and tones, written block by block), then for each model
(the tiny preset, causal, and a non-causal variant coded on a 1 s segment grid with RMS
normalisation; random weights, codebooks initialised on the first second) and each mode runs
one child process that encodes the file and decodes it to a WAV:

    streamed   encode_audio(model, open_audio(wav)); write_blocks(out, decode_stream(...))
    in-memory  encode_audio(model, read_audio(wav)); write_audio(out, decode_audio(...).samples)

and reports the child's peak RSS (VmHWM, reset after imports and model creation: "growth" is
what coding added), wall times and a digest of the codes (the same in both modes).

    python benchmarks/long_input_memory.py [--minutes 60] [--models causal,segmented]
        [--modes streamed,in-memory] [--chunk-seconds 10] [--json results.json]

``--chunk-seconds``: the causal model's chunks (encode and decode; the CLI uses 10 s), whose
activations are most of what streamed coding of that model adds besides the codes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
MODELS = ("causal", "segmented")
MODES = ("streamed", "in-memory")
MiB = 1 << 20


def synthesise(path: Path, minutes: float, seed: int = 0) -> int:
    """A mono 16-bit WAV of noise and slowly gliding tones, written 10 s at a time; returns its frames."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    frames = int(minutes * 60 * SAMPLE_RATE)
    block = 10 * SAMPLE_RATE
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as f:
        for start in range(0, frames, block):
            t = np.arange(start, min(start + block, frames)) / SAMPLE_RATE
            tones = 0.3 * np.sin(2 * np.pi * (220 + 30 * np.sin(0.05 * t)) * t) + 0.1 * np.sin(2 * np.pi * 1375 * t)
            f.write((tones + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
    return frames


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak() -> int:
    """Reset the peak RSS (VmHWM) to the current RSS, which is returned."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def limit_memory(extra: int) -> None:
    """Cap the address space at what is mapped now + ``extra``: a runaway allocation fails at once."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + extra, hard))


def build_model(kind: str, wav: Path):
    """The tiny preset, causal or segmented, codebooks initialised on the file's first second."""
    import soundfile as sf
    import torch

    from codec.audio import AudioCodec
    from codec.audio.presets import tiny

    torch.manual_seed(0)
    config = tiny()
    if kind == "segmented":
        config = replace(config, seanet=replace(config.seanet, causal=False, pad_mode="reflect"),
                         segment_seconds=1.0, normalize=True)
    model = AudioCodec(config)
    data, _ = sf.read(wav, frames=SAMPLE_RATE, dtype="float32")
    with torch.no_grad():
        model.train()(torch.from_numpy(data[None, None]))
    return model.eval()


def child(kind: str, mode: str, wav: Path, out: Path, limit: int, chunk: float) -> dict:
    """One run, in this (fresh) process: encode ``wav``, decode to ``out``; peak RSS and times."""
    import torch

    torch.set_num_threads(1)
    from codec.audio.compress import decode_audio, encode_audio
    from codec.audio.io import read_audio, write_audio

    model = build_model(kind, wav)
    streamed = mode == "streamed"
    if streamed:
        from codec.audio.compress import decode_stream
        from codec.audio.io import open_audio, write_blocks
    limit_memory(limit)
    base = reset_peak()
    start = time.perf_counter()
    if streamed:
        with open_audio(wav) as reader:
            encoded = encode_audio(model, reader, chunk_seconds=chunk)
    else:
        encoded = encode_audio(model, read_audio(wav), chunk_seconds=chunk)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    if streamed:
        write_blocks(out, decode_stream(model, encoded, chunk), encoded.sample_rate)
    else:
        write_audio(out, decode_audio(model, encoded, chunk).samples, encoded.sample_rate)
    decode_s = time.perf_counter() - start
    peak = _status("VmHWM")
    digest = hashlib.sha256(encoded.codes.numpy().tobytes())
    if encoded.scales is not None:
        digest.update(encoded.scales.numpy().tobytes())
    return dict(model=kind, mode=mode, base_mib=base / MiB, peak_mib=peak / MiB, growth_mib=(peak - base) / MiB,
                encode_s=encode_s, decode_s=decode_s, codes_shape=list(encoded.codes.shape),
                codes_sha256=digest.hexdigest(), codes_mib=encoded.codes.numel() * 8 / MiB)


def run(kind: str, mode: str, wav: Path, out: Path, limit: int, chunk: float, timeout: float) -> dict:
    """``child`` in a fresh interpreter (one torch thread), so that peaks do not mix."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", kind, mode, str(wav), str(out), str(limit), str(chunk)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        return dict(model=kind, mode=mode, error=tail[0])
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict], audio_mib: float) -> str:
    lines = ["| model | mode | peak RSS MiB | growth MiB | encode s | decode s | codes (MiB) | same codes |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['mode']} | failed: {r['error']} | | | | | |")
            continue
        same = {x.get("codes_sha256") for x in rows if x["model"] == r["model"]} == {r["codes_sha256"]}
        lines.append(f"| {r['model']} | {r['mode']} | {r['peak_mib']:.0f} | {r['growth_mib']:.0f} "
                     f"| {r['encode_s']:.1f} | {r['decode_s']:.1f} | {r['codes_sha256'][:10]} ({r['codes_mib']:.0f}) "
                     f"| {'yes' if same else 'NO'} |")
    lines.append(f"\naudio as float32: {audio_mib:.0f} MiB; growth = peak RSS - RSS after imports and model creation")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, mode, wav, out, limit, chunk = sys.argv[2:8]
        print(json.dumps(child(kind, mode, Path(wav), Path(out), int(limit), float(chunk))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--chunk-seconds", type=float, default=10.0, help="causal model's chunks")
    parser.add_argument("--limit-gib", type=float, default=4.0, help="address space each run may add")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dir", type=Path, help="folder for the WAV files (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        wav = Path(tmp) / "long.wav"
        start = time.perf_counter()
        frames = synthesise(wav, args.minutes)
        print(f"{args.minutes:g} min of 16 kHz mono ({wav.stat().st_size / MiB:.0f} MiB WAV) "
              f"synthesised in {time.perf_counter() - start:.1f} s", flush=True)
        rows = []
        for kind in args.models.split(","):
            for mode in args.modes.split(","):
                out = Path(tmp) / f"{kind}-{mode}.wav"
                limit = int(args.limit_gib * (1 << 30))
                rows.append(run(kind, mode, wav, out, limit, args.chunk_seconds, timeout=3600))
                out.unlink(missing_ok=True)
                print(json.dumps(rows[-1]), flush=True)
    audio_mib = frames * 4 / MiB
    print(table(rows, audio_mib))
    if args.json:
        args.json.write_text(json.dumps(dict(minutes=args.minutes, chunk_seconds=args.chunk_seconds,
                                             audio_mib=audio_mib, runs=rows), indent=1))


if __name__ == "__main__":
    main()
