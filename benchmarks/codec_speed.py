"""Encode and decode real-time factors on this machine's CPU (or --device cuda).

RTF = processing time / audio duration (below 1 is faster than real time), for whole-file
coding (10 s chunks) and for live streaming in 80 ms chunks. Models are randomly
initialised: speed does not depend on the weights.

    python benchmarks/codec_speed.py [--seconds 10] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import soundfile as sf
import torch

from codec.audio import AudioCodec
from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio
from codec.audio.presets import encodec_24khz, speech_16khz

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "arctic_slt_a0009.flac"


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    speech, sr = sf.read(SAMPLE, dtype="float32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.seconds:g} s of speech, best of {args.repeats}")
    print(f"{'config':<14} {'params':>8} {'kbps':>6} {'encode RTF':>11} {'decode RTF':>11} "
          f"{'x real time (enc/dec)':>22} {'80 ms chunks enc/dec RTF':>25}")
    for name, config in [("speech_16khz", speech_16khz()), ("encodec_24khz", encodec_24khz())]:
        torch.manual_seed(0)
        model = AudioCodec(config).to(args.device).eval()
        reps = int(args.seconds * sr / len(speech)) + 1
        audio = Audio(torch.from_numpy(speech).repeat(reps)[None, : int(args.seconds * sr)], sr)
        n_q = model.max_n_q
        encoded = encode_audio(model, audio, n_q)  # warm-up
        t_enc = best_time(lambda: encode_audio(model, audio, n_q), args.repeats)
        t_dec = best_time(lambda: decode_audio(model, encoded), args.repeats)
        # live streaming: 80 ms chunks through the per-module streaming state
        t_enc_s = best_time(lambda: encode_audio(model, audio, n_q, chunk_seconds=0.08), args.repeats)
        t_dec_s = best_time(lambda: decode_audio(model, encoded, chunk_seconds=0.08), args.repeats)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<14} {params:>7.2f}M {config.token_spec.bandwidths()[-1]:>6g} {t_enc / args.seconds:>11.4f} "
              f"{t_dec / args.seconds:>11.4f} {args.seconds / t_enc:>10.1f} / {args.seconds / t_dec:<10.1f}"
              f"{t_enc_s / args.seconds:>13.4f} / {t_dec_s / args.seconds:.4f}")


if __name__ == "__main__":
    main()
