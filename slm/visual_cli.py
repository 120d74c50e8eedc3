"""`codec sample` and `codec lm eval`: image and video generators from the command line (thin wrappers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from codec.cli_support import Device, Force, cli_errors, stdout
from codec.errors import CodecError

lm_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                     help="Image and video generators over tokenizer tokens (train with `codec train RECIPE`).")

Steps = Annotated[int, typer.Option(min=0, help="MaskGIT decoding steps; flow head: random-order (MAR) steps; "
                                                "0: the model's default.")]
Cfg = Annotated[float, typer.Option(min=0.0, help="Classifier-free guidance scale (1: none).")]
Temperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0: greedy).")]
TopK = Annotated[int, typer.Option(min=0, help="Keep the k most likely codes (0: all).")]
Order = Annotated[Optional[str], typer.Option(help="Continuous tokens: raster or random (MAR) order (default: the "
                                                   "order the model was trained for).")]


def tile(images, columns: int):
    """[N, C, H, W] or [N, C, T, H, W] -> one grid [C, H', W'] or [C, T, H', W'] with 2-pixel white gaps."""
    import torch

    n = images.shape[0]
    rows = -(-n // columns)
    height, width = images.shape[-2:]
    shape = (*images.shape[1:-2], rows * (height + 2), columns * (width + 2))
    canvas = torch.ones(shape)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[..., r * (height + 2):r * (height + 2) + height, c * (width + 2):c * (width + 2) + width] = image
    return canvas


@cli_errors
def sample(  # `codec sample`: cli.py registers it on the main app
    model: Annotated[str, typer.Option(help="Generator model folder (a run's best/).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="grid.png for images; clip.gif or clip.mp4 for video.")],
    label: Annotated[Optional[list[int]], typer.Option("--class", help="Class of every sample (repeatable: cycled); "
                                                                       "default: 0, 1, 2, ... in turn.")] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="Number of samples.")] = 16,
    steps: Steps = 0,
    cfg: Cfg = 1.0,
    temperature: Temperature = 1.0,
    top_k: TopK = 0,
    order: Order = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    tokenizer: Annotated[Optional[str], typer.Option(help="The generator's tokenizer, if not found by its name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Generate images (a PNG grid) or videos (a GIF/MP4 of tiled clips) with a trained generator."""
    import math

    import torch

    from codec.devices import apply_threads
    from codec.files import check_writable
    from slm.visual_generation import GenerationOptions
    from slm.visual_models import load_generator

    check_writable(output, force)
    apply_threads()
    loaded = load_generator(model, tokenizer, device)
    video = loaded.tokenizer.token_spec.modality == "video"
    suffix = output.suffix.lower()
    if suffix not in ((".gif", ".mp4") if video else (".png",)):
        raise CodecError(f"-o must end in {'.gif or .mp4 for a video generator' if video else '.png for images'}, "
                         f"got {output.name}.")
    classes = loaded.num_classes
    wanted = label or list(range(max(classes, 1)))
    if classes and any(not 0 <= c < classes for c in wanted):
        raise CodecError(f"--class must be in 0..{classes - 1} for this generator.")
    labels = torch.tensor([wanted[i % len(wanted)] for i in range(n)], device=loaded.device)
    try:
        trained_order = getattr(loaded.model.config, "order", "raster")
        if order is not None and order != trained_order:
            raise CodecError(f"This generator was trained for {trained_order} order; --order {order} does not apply.")
        order = trained_order
        options = GenerationOptions(steps=steps, cfg=cfg, temperature=temperature, top_k=top_k, order=order)
    except ValueError as e:
        raise CodecError(f"Invalid sampling options: {e}.") from None
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    with torch.inference_mode():
        result = loaded.model.generate(labels, loaded.tokenizer, options, generator)
    grid = tile(result.images.float().cpu().clamp(0, 1), columns=math.ceil(math.sqrt(n)))
    if video:
        from codec.video.io import write_video

        write_video(output, grid, loaded.tokenizer.config.frame_rate, force)
    else:
        from codec.image.io import write_image

        write_image(output, grid, force)
    stdout.print(f"wrote {n} samples ({result.forward_passes} transformer passes) to {output}", markup=False)


@lm_app.command("eval")
@cli_errors
def lm_eval(
    model: Annotated[list[str], typer.Option(help="Generator model folder (repeatable: compared side by side; one "
                                                  "modality at a time).")],
    out: Annotated[Path, typer.Option(help="Report folder: results.json/.csv/.md, plot.png, sample grids.")],
    n: Annotated[int, typer.Option("--n", min=20, max=5000, help="Samples per generator (classes 0-9 in turn; at "
                                                             "least two of each for the diversity).")] = 200,
    steps: Steps = 0,
    sweep_steps: Annotated[str, typer.Option(help="Step counts for MaskGIT and random-order flow models "
                                                  "(comma-separated; empty: no sweep).")] = "1,2,4,8,16",
    cfg: Cfg = 1.0,
    temperature: Temperature = 1.0,
    top_k: TopK = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    classifier: Annotated[Optional[Path], typer.Option(help="Digit classifier folder (default: the bundled one).")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Digit generators judged by a digit classifier: Fréchet distance to held-out digits, class accuracy,
    diversity, forward passes and time per image; quality vs steps for MaskGIT and the flow head."""
    from rich.progress import Progress

    from codec.cli_support import stderr
    from codec.devices import apply_threads
    from codec.eval.digit_classifier import load_digit_classifier
    from slm.visual_eval import evaluate_generators, sweepable, write_generation_report
    from slm.visual_generation import GenerationOptions
    from slm.visual_models import load_generator

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    try:
        counts = [int(s) for s in sweep_steps.split(",") if s.strip()]
    except ValueError:
        raise CodecError(f"--sweep-steps must be comma-separated integers, got {sweep_steps!r}.") from None
    if any(c < 1 for c in counts):
        raise CodecError("--sweep-steps must be positive.")
    apply_threads()
    loaded = [(Path(m).name if Path(m).name != "best" else Path(m).parent.name, load_generator(m, None, device))
              for m in model]
    modalities = {g.tokenizer.token_spec.modality for _, g in loaded}
    if len(modalities) > 1:
        raise CodecError("Evaluate image and video generators separately.")
    try:
        options = GenerationOptions(steps=steps, cfg=cfg, temperature=temperature, top_k=top_k)
    except ValueError as e:
        raise CodecError(f"Invalid sampling options: {e}.") from None
    total = sum(1 + (len(counts) if sweepable(g) else 0) for _, g in loaded)
    with Progress(console=stderr) as progress:
        task = progress.add_task("generating", total=total)
        rows, sweeps, samples = evaluate_generators(loaded, load_digit_classifier(classifier), n, options, counts,
                                                    seed, lambda: progress.advance(task))
    fps = getattr(loaded[0][1].tokenizer.config, "frame_rate", None)
    table = write_generation_report(out, rows, sweeps, samples, fps, force=True)
    stdout.print(table, markup=False)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png and sample grids", markup=False)
