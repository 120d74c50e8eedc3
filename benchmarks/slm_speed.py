"""Spoken LM speed on this machine. Token LM: training tokens/s, generation frames/s with and
without the KV cache, and the steps each codebook pattern needs per second of audio. Latent LM
(flow head): training frames/s and generation frames/s for each number of head ODE steps.

The models are randomly initialised (speed does not depend on the weights), over the default
codec's tokens (12 levels of 1024 codes at 50 Hz) and latents (128 dims at 50 Hz). The KV-cache
speed-up is the ratio of the two generation rates measured in the same run.

    python benchmarks/slm_speed.py [--dim 256] [--layers 4] [--contexts 1024 4096] [--frames 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from slm.flow import FlowHeadConfig
from slm.latent_model import LatentLM, LatentLMConfig, SamplingOptions
from slm.model import TokenLM, TokenLMConfig
from slm.patterns import Pattern
from slm.sampling import SamplingConfig
from slm.transformer import TransformerConfig

SIZES, FRAME_RATE, LATENT_DIM = (1024,) * 12, 50.0, 128
HEAD_STEPS = (1, 2, 4, 8, 20)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--frames", type=int, default=8, help="frames generated per measurement")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    transformer = TransformerConfig(dim=args.dim, layers=args.layers, heads=args.dim // 64,
                                    max_steps=max(args.contexts) + args.frames + 16)
    model = TokenLM(TokenLMConfig(SIZES, FRAME_RATE, "delay", transformer))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"TokenLM {params:.2f} M parameters, dim {args.dim}, {args.layers} layers, delay pattern, "
          f"{len(SIZES)} x {SIZES[0]} codes at {FRAME_RATE:g} Hz, {args.threads} thread(s)")

    print("\n| pattern | steps per second of audio |\n|---|---:|")
    for name in ("parallel", "delay", "flatten", "coarse_first"):
        print(f"| {name} | {Pattern(name, len(SIZES)).num_steps(int(FRAME_RATE * 60)) / 60:g} |")

    codes = torch.stack([torch.randint(0, k, (8, 250)) for k in SIZES], 1)  # 8 x 5 s
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        loss = model(codes).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_step()  # warm-up
    seconds = min(timed(train_step) for _ in range(3))
    tokens = codes.numel()
    print(f"\ntraining: {tokens / seconds:,.0f} tokens/s ({codes.shape[0] * codes.shape[2] / seconds:,.0f} frames/s, "
          f"batch 8 x 5 s)")

    model.eval()
    greedy = SamplingConfig(temperature=0)
    print("\n| context (frames) | with KV cache (frames/s) | recomputing (frames/s) | speed-up |\n|---:|---:|---:|---:|")
    for context in args.contexts:
        prompt = torch.stack([torch.randint(0, k, (1, context)) for k in SIZES], 1)
        generate = lambda cache: model.generate(prompt, args.frames, greedy, use_cache=cache)
        cached = args.frames / timed(lambda: generate(True))
        recomputed = args.frames / timed(lambda: generate(False))
        print(f"| {context} | {cached:.2f} | {recomputed:.2f} | {cached / recomputed:.1f}x |")
    latent_lm(args, transformer)


def latent_lm(args, transformer: TransformerConfig) -> None:
    """Training and generation speed of the flow-head LM with the same transformer."""
    torch.manual_seed(0)
    config = LatentLMConfig(LATENT_DIM, FRAME_RATE, (0.0,) * LATENT_DIM, (1.0,) * LATENT_DIM, 1, transformer,
                            FlowHeadConfig(dim=args.dim, blocks=3, noise_draws=4))
    model = LatentLM(config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"\nLatentLM {params:.2f} M parameters (flow head {sum(p.numel() for p in model.head.parameters()) / 1e6:.2f} M),"
          f" {LATENT_DIM}-dim latents at {FRAME_RATE:g} Hz, 4 noise draws per frame")
    latents = torch.randn(8, LATENT_DIM, 250)  # 8 x 5 s
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        loss = model(latents).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_step()
    seconds = min(timed(train_step) for _ in range(3))
    print(f"training: {latents.shape[0] * latents.shape[2] / seconds:,.0f} frames/s (batch 8 x 5 s)")
    model.eval()
    prompt = torch.randn(1, LATENT_DIM, 50)  # 1 s of context
    print("\n| head ODE steps (Euler) | generation frames/s | s per s of audio |\n|---:|---:|---:|")
    for steps in HEAD_STEPS:
        options = SamplingOptions(steps=steps)
        frames = args.frames * 4
        rate = frames / min(timed(lambda: model.generate(prompt, frames, options)) for _ in range(3))  # best of 3
        print(f"| {steps} | {rate:.1f} | {FRAME_RATE / rate:.2f} |")


if __name__ == "__main__":
    main()
