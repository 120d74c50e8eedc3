"""Train the digit classifier that judges digit generators and ship it with the package.

Trains ``DigitClassifier`` on the train split of scikit-learn's digits (one CPU thread, about
three minutes), prints its accuracy on every split (and on the frames of one-digit moving-digits
test videos, which the video scores classify) and writes ``model.safetensors`` and
``info.json`` (config, accuracy, training settings) to the output folder:

    python scripts/train_digit_classifier.py --force   # -> codec/eval/bundled/digit_classifier/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from codec.errors import CodecError
from codec.eval.digit_classifier import (BUNDLED_CLASSIFIER, DigitClassifier, evaluate_accuracy, predict,
                                         save_digit_classifier, train_digit_classifier)
from codec.image.datasets import SPLITS
from codec.video.moving_digits import MovingDigits


def moving_digits_accuracy(model: DigitClassifier, videos: int = 200, frames: int = 8) -> float:
    """The fraction of frames of one-digit moving-digits test videos classified as their digit."""
    dataset = MovingDigits(videos, frames, split="test")
    clips = torch.stack([dataset[i] for i in range(videos)])  # [B, 1, T, 32, 32]
    labels = torch.cat([dataset.label(i) for i in range(videos)]).repeat_interleave(frames)
    return (predict(model, clips.transpose(1, 2).flatten(0, 1)) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("-o", "--output", type=Path, default=BUNDLED_CLASSIFIER)
    parser.add_argument("--force", action="store_true", help="Overwrite an existing classifier.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = train_digit_classifier(args.steps, args.seed, args.augment, args.batch_size, args.learning_rate)
    seconds = time.perf_counter() - start
    accuracy = {split: round(evaluate_accuracy(model, split), 4) for split in SPLITS}
    accuracy["moving_digits_test_frames"] = round(moving_digits_accuracy(model), 4)
    training = {"dataset": "sklearn digits, train split (i % 10 in 0..7), 32 x 32", "steps": args.steps,
                "seed": args.seed, "augment": args.augment, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "optimizer": "Adam, cosine decay", "threads": 1,
                "seconds": round(seconds, 1), "torch": torch.__version__}
    try:
        save_digit_classifier(model, args.output, {"accuracy": accuracy, "training": training}, args.force)
    except CodecError as e:
        sys.exit(f"error: {e}")
    print(f"trained in {seconds:.0f} s; accuracy " + ", ".join(f"{k} {v:.2%}" for k, v in accuracy.items()))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
