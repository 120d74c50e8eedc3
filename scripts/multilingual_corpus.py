"""Synthesize a multilingual speech corpus for codec training (codec/data/multilingual.py):
gettext catalog phrases read by espeak-ng in about 50 languages, 4 of them held out, or by the
installed festival voices (9 languages, 3 voices held out).

    python scripts/multilingual_corpus.py --out multilingual --minutes 20
    python scripts/multilingual_corpus.py --out festival_voices --minutes 40 --engine festival
    python scripts/multilingual_corpus.py --out festival_pitch --minutes 40 --engine festival --pitch-factors 0.8 1.25
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from codec.data.multilingual import build_multilingual_corpus, plan_corpus
from codec.errors import CodecError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (rerun to resume)")
    parser.add_argument("--minutes", type=float, default=20.0, help="minutes of training speech (about)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=("espeak-ng", "festival"), default="espeak-ng", help="TTS engine")
    parser.add_argument("--workers", type=int, default=2, help="TTS processes at once")
    parser.add_argument("--pitch-factors", type=float, nargs="+", default=[1.0], metavar="F",
                        help="festival: speak with the pitch targets times each F (diphone voices; default 1)")
    args = parser.parse_args()
    try:
        factors = tuple(args.pitch_factors)
        total = len(plan_corpus(args.out, args.minutes, args.seed, engine=args.engine, pitch_factors=factors))
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task("synthesizing", total=total)
            made = build_multilingual_corpus(args.out, args.minutes, args.seed, max(1, args.workers),
                                             advance=lambda: progress.advance(task), engine=args.engine,
                                             pitch_factors=factors)
    except CodecError as e:
        sys.exit(f"error: {e}")
    print(", ".join(f"{split} {minutes:.1f} min" for split, minutes in sorted(made.minutes.items())) + f" in {args.out}")
    if made.skipped:
        print(f"skipped {len(made.skipped)} sentences the voices could not speak, e.g. {made.skipped[0]}")


if __name__ == "__main__":
    main()
