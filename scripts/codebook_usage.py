"""How many codes of each residual level an audio codec uses on some audio, and their perplexity.

A level whose clips use few of its codes carries few bits whatever the nominal bitrate: the sum
of the levels' entropies (bits per frame) times the frame rate bounds the information in the
stream.

    python scripts/codebook_usage.py devspeech_16khz_v7 --data build/heldout.jsonl
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from codec.errors import CodecError


def level_codes(model, paths: list[Path]) -> torch.Tensor:
    """All levels' codes of the audio files ``paths``, coded by ``model``: [C, Q, frames]."""
    from codec.audio.compress import encode_audio
    from codec.audio.io import read_audio

    with torch.inference_mode():
        return torch.cat([encode_audio(model, read_audio(p)).codes for p in paths], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="A bundled or registered model's name, or a model folder.")
    parser.add_argument("--data", type=Path, required=True, help="An audio folder or a JSONL manifest with \"path\".")
    args = parser.parse_args()
    try:
        from codec.cli_support import load_model
        from codec.eval.runner import find_clips
        from codec.quantization.metrics import codebook_metrics

        model = load_model(args.model, "cpu").model
        if model.config.token_spec.modality != "audio":
            raise CodecError(f"{args.model} is not an audio codec.")
        codes = level_codes(model, [clip.path for clip in find_clips(args.data)])
    except CodecError as e:
        sys.exit(f"error: {e}")
    sizes = model.config.token_spec.codebook_sizes
    usage, perplexity = codebook_metrics(codes, max(sizes))
    print(f"{codes.shape[-1]} frames of {args.data}")
    print("| level | codes | used | perplexity | bits |\n|---:|---:|---:|---:|---:|")
    for level, (size, used, ppl) in enumerate(zip(sizes, usage.tolist(), perplexity.tolist())):
        print(f"| {level} | {size} | {round(used * max(sizes))} | {ppl:.1f} | {math.log2(ppl):.2f} |")
    bits = float(torch.log2(perplexity).sum())
    rate = model.config.token_spec.frame_rate
    print(f"{bits:.1f} bits per frame: at most {bits * rate / 1000:.2f} kbps of information "
          f"in the {sum(math.log2(k) for k in sizes) * rate / 1000:g} kbps stream")


if __name__ == "__main__":
    main()
