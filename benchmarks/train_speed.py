"""Training speed of a recipe, with and without discriminators: steps/s and audio-seconds/s.

Runs a few warm-up steps, then times `--steps` training steps on the recipe's model and
batch (random crops of the given corpus). Audio-seconds/s = steps/s x batch x crop length,
the figure to compare with real time. The discriminator rows add EnCodec's MS-STFT
discriminator and DAC's MPD + MRD at their published sizes.

    python benchmarks/train_speed.py recipes/devspeech/codec16k.yaml --data-dir ../shared/data/devspeech
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from codec.data import build_train_loader
from codec.train import Trainer, load_train_config, read_recipe

VARIANTS = {
    "no discriminator": ["adversarial.discriminator=null"],
    "+ MS-STFT (EnCodec)": ["adversarial.discriminator={kinds: [msstft]}"],
    "+ MPD + MRD (DAC)": ["adversarial.discriminator={kinds: [mpd, mrd]}"],
}


def time_steps(trainer: Trainer, steps: int, warmup: int) -> float:
    config = trainer.config
    loader = iter(build_train_loader(trainer.train_set, config.batch_size, config.seed, start_step=trainer.step,
                                     num_workers=trainer.data.num_workers))
    for _ in range(warmup):
        trainer.train_step(next(loader).to(trainer.env.device))
        trainer.step += 1
    batches = [next(loader).to(trainer.env.device) for _ in range(steps)]
    start = time.perf_counter()
    for batch in batches:
        trainer.train_step(batch)
        trainer.step += 1
    if trainer.env.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.recipe}")
    print(f"{'variant':<22} {'params (codec + disc)':>22} {'steps/s':>8} {'audio s/s':>10} {'vs no disc':>10}")
    reference = None
    for name, extra in VARIANTS.items():
        config = load_train_config(read_recipe(args.recipe), args.overrides + extra + ["adversarial.warmup_steps=0"],
                                   args.data_dir)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(config, run_dir)
            steps_per_s = time_steps(trainer, args.steps, args.warmup)
        discriminator = trainer.objective.discriminator
        disc = sum(p.numel() for p in discriminator.parameters()) if discriminator is not None else 0
        codec = sum(p.numel() for p in trainer.model.parameters())
        audio = steps_per_s * config.batch_size * config.data.crop_seconds
        reference = reference or steps_per_s
        print(f"{name:<22} {codec / 1e6:>9.2f} M + {disc / 1e6:>6.2f} M {steps_per_s:>8.2f} {audio:>10.1f} "
              f"{steps_per_s / reference:>9.2f}x")


if __name__ == "__main__":
    main()
