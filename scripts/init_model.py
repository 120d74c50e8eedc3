"""Create an UNTRAINED model folder from a preset, for demos and smoke tests.

The SEANet weights are random; with --calibrate, each codebook is initialised by k-means
on the latents of the given clips (one training-mode pass, no gradient step). Decoded
audio will not resemble the input until the model is trained (`codec train`).

    python scripts/init_model.py --preset speech_16khz --calibrate samples/*.flac OUT_DIR
"""

from __future__ import annotations

import argparse

import torch

from codec.audio import AudioCodec, save_pretrained
from codec.audio.compress import to_model_input
from codec.audio.io import read_audio
from codec.audio.presets import PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="model folder to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="speech_16khz")
    parser.add_argument("--calibrate", nargs="*", default=[], help="audio files for k-means codebook init")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite an existing model folder")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = AudioCodec(PRESETS[args.preset]())
    if args.calibrate:
        clips = [to_model_input(model, read_audio(path), downmix=True)[0] for path in args.calibrate]
        length = min(c.shape[-1] for c in clips) // model.hop_length * model.hop_length
        batch = torch.stack([c[..., :length] for c in clips])
        with torch.no_grad():
            model.train()(batch)
    save_pretrained(model.eval(), args.out, {"license": "MIT", "description": f"untrained {args.preset} (seed {args.seed})"},
                    force=args.force)
    print(f"wrote untrained {args.preset} model to {args.out}")


if __name__ == "__main__":
    main()
