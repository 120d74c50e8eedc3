"""Export a trained model folder (e.g. runs/NAME/best) as a named model with its metadata.

    python scripts/export_model.py runs/default16k/best codec/audio/bundled/devspeech_16khz \
        --license CC-BY-SA-3.0 --description "..." --card docs/MODEL_CARD.md

Writes OUT/config.json + OUT/model.safetensors (the weights unchanged, the metadata added) and
copies the model card to OUT/MODEL_CARD.md. Refuses to overwrite without --force.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from codec.checkpoint import load_checkpoint, model_fingerprint, read_checkpoint_info, save_pretrained
from codec.errors import CodecError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="A model folder (config.json + model.safetensors).")
    parser.add_argument("out", type=Path)
    parser.add_argument("--license", required=True, help="The weights' license.")
    parser.add_argument("--description", required=True)
    parser.add_argument("--card", type=Path, help="A model card (Markdown) to copy as OUT/MODEL_CARD.md.")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    try:
        info = read_checkpoint_info(args.model)
        model = load_checkpoint(args.model)
        metadata = {**{k: str(v) for k, v in info.metadata.items()}, "license": args.license,
                    "description": args.description}
        save_pretrained(model, args.out, metadata, force=args.force)
        if args.card:
            shutil.copyfile(args.card, args.out / "MODEL_CARD.md")
    except (CodecError, OSError) as e:
        sys.exit(f"error: {e}")
    size = sum(p.stat().st_size for p in args.out.iterdir()) / 2**20
    print(f"wrote {args.out} ({info.num_parameters / 1e6:.2f} M parameters, {size:.1f} MiB, "
          f"fingerprint {model_fingerprint(model)})")


if __name__ == "__main__":
    main()
