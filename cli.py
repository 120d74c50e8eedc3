"""The ``codec`` command line: thin wrappers over the library (see DESIGN.md section 4).

Errors print one sentence on stderr and exit non-zero; outputs are written atomically and
existing files are only replaced with --force. CODEC_DEBUG=1 shows tracebacks. Handlers import
what they need, so that `codec info` and `codec --help` start without torch. `codec --threads N ...`
(or CODEC_THREADS=N) sets torch's CPU threads per process; by default, the CPUs other work leaves idle.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.progress import Progress

from codec.cli_support import (Device, Force, Output, Workers, cli_errors, levels_for, load_model as _load_model,
                                model_for_file, stderr, stdout)
from codec.errors import CodecError
from slm import cli as slm_cli, visual_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural audio codec toolkit: compress speech to tokens and back.")


@app.callback()
@cli_errors
def options(
    threads: Annotated[Optional[int], typer.Option(show_default=False, help=(
        "CPU threads of torch per process (the same as CODEC_THREADS=N; default: the CPUs that other work "
        "leaves idle)."))] = None,
) -> None:
    """Options for every subcommand, given before its name (codec --threads 1 encode ...)."""
    from codec.devices import THREADS_ENV, choose_threads

    if threads is not None:  # the environment also reaches worker processes
        os.environ[THREADS_ENV] = str(choose_threads(threads))


def _run_each(jobs: list[tuple[Path, Path]], work: Callable[[Path, Path], None], workers: int = 1) -> None:
    """Run ``work`` per file (``workers`` processes), with a progress bar for several; report each
    failure, exit 1 if any."""
    from codec.jobs import run_jobs

    with Progress(console=stderr, disable=len(jobs) < 2) as progress:
        task = progress.add_task("files", total=len(jobs))
        failures = run_jobs(jobs, work, workers, lambda: progress.advance(task))
    for _, message in failures:
        stderr.print(f"error: {message}", markup=False, soft_wrap=True)
    if failures:
        if len(jobs) > 1:
            stderr.print(f"{len(failures)} of {len(jobs)} files failed.", markup=False)
        raise typer.Exit(1)


def _encode_file(src: Path, dst: Path, model: Optional[str], device: str, n_q: int, downmix: bool, batch: int,
                 force: bool) -> None:
    from codec.audio.bitstream import CdcHeader, write_cdc
    from codec.audio.compress import encode_audio
    from codec.audio.io import open_audio

    loaded = _load_model(model, device)
    with open_audio(src) as reader:  # read block by block: any length in bounded memory
        encoded = encode_audio(loaded.model, reader, n_q, downmix, batch_size=batch)
    write_cdc(dst, CdcHeader.for_encoded(encoded, loaded.name, loaded.fingerprint), encoded.codes, force)


def _decode_file(src: Path, dst: Path, model: Optional[str], device: str, force: bool) -> None:
    from codec.audio.bitstream import read_cdc
    from codec.image.bitstream import VERSION as VISUAL, cdc_version

    if cdc_version(src) == VISUAL:
        from codec.visual_cli import decode_visual_file

        return decode_visual_file(src, dst, model, device, force)
    from codec.audio.compress import decode_stream
    from codec.audio.io import write_blocks

    header, codes = read_cdc(src)
    loaded = model_for_file(src, model, device, header.model, header.model_fingerprint, "audio")
    codec = loaded.model
    header.check_model(codec.config.token_spec, codec.sample_rate, codec.channels, source=f"Input file '{src}'")
    write_blocks(dst, decode_stream(codec, header.encoded(codes)), header.original_sample_rate, force)


@app.command()
@cli_errors
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, OGG, Opus, MP3); images (PNG, "
                                                      "JPEG, ...) or videos (MP4, GIF, ...) with an image or video "
                                                      "tokenizer as --model.", show_default=False)],
    output: Output = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name or model folder (default: the default "
                                                      "audio codec).")] = None,
    bandwidth: Annotated[Optional[float], typer.Option(help="Target bitrate in kbps (the highest that fits).")] = None,
    n_q: Annotated[Optional[int], typer.Option("--n-q", help="Number of codebooks (sets the bitrate).")] = None,
    downmix: Annotated[bool, typer.Option(help="Average all channels to mono before coding.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Non-causal models: segments coded at once (faster on a GPU; "
                                                   "may flip near-tie codes).")] = 1,
    workers: Workers = 1,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Compress audio files (or images and videos, by the model's modality) into .cdc token files."""
    from codec.devices import apply_threads
    from codec.files import check_writable
    from codec.image.io import IMAGE_SUFFIXES
    from codec.jobs import plan_outputs
    from codec.video.io import VIDEO_SUFFIXES

    outputs = plan_outputs(inputs, output, ".cdc")
    for dst in outputs:
        check_writable(dst, force)
    apply_threads()
    visual_inputs = [p for p in inputs if p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)]
    if visual_inputs and model is None:
        raise CodecError(f"{visual_inputs[0]} is an image or video: pass --model with an image or video tokenizer "
                         "(see `codec models`).")
    spec = _load_model(model, device).model.token_spec
    if spec.modality == "image" and bandwidth is not None:
        raise CodecError("Images have no bitrate per second: choose the levels with --n-q.")
    levels = levels_for(spec, bandwidth, n_q)
    if spec.modality == "audio":
        work = functools.partial(_encode_file, model=model, device=device, n_q=levels, downmix=downmix, batch=batch,
                                 force=force)
    else:
        from codec.visual_cli import encode_visual_file

        work = functools.partial(encode_visual_file, model=model, device=device, n_q=levels, force=force)
    _run_each(list(zip(inputs, outputs)), work, workers)


@app.command()
@cli_errors
def decode(
    inputs: Annotated[list[Path], typer.Argument(help=".cdc files.", show_default=False)],
    output: Output = None,
    model: Annotated[Optional[str], typer.Option(help="Model to decode with (default: the one named in the file).")] = None,
    workers: Workers = 1,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Decode .cdc files back to audio (WAV, or FLAC/OGG/Opus/MP3 by the extension) at the original
    sample rate and length, or to images (PNG) and videos (MP4, or GIF by the extension) at their original size."""
    from codec.devices import apply_threads, parse_device
    from codec.files import check_writable
    from codec.jobs import plan_outputs

    from codec.image.bitstream import VERSION as VISUAL, cdc_version, read_visual_cdc

    def default_suffix(path: Path) -> str:
        if cdc_version(path) != VISUAL:
            return ".wav"
        try:
            return ".mp4" if read_visual_cdc(path)[0].video else ".png"
        except CodecError:
            return ".png"  # decoding it reports the defect

    suffixes = {default_suffix(p) for p in inputs}
    outputs = plan_outputs(inputs, output, suffixes.pop() if len(suffixes) == 1 else ".wav")
    for dst in outputs:
        check_writable(dst, force)
    parse_device(device)
    apply_threads()
    _run_each(list(zip(inputs, outputs)), functools.partial(_decode_file, model=model, device=device, force=force),
              workers)


def _info_rows(path: Path) -> list[tuple[str, str]]:
    from codec.audio.bitstream import inspect_cdc
    from codec.image.bitstream import VERSION as VISUAL, cdc_version

    if cdc_version(path) == VISUAL:
        from codec.visual_cli import visual_info_rows

        return visual_info_rows(path)

    header, layout = inspect_cdc(path)
    nominal = header.nominal_bitrate * header.channels  # TokenSpec stored bits per second at the file's n_q
    actual = header.actual_bitrate(layout.size)  # the whole file's bits over the duration
    after = f"{layout.payload_bytes} bytes of codes{f', {layout.scale_bytes} of scales' if layout.scale_bytes else ''}"
    per = f" {nominal / 1000:.3f} kbps of {header.channels} channels" if header.channels > 1 else ""
    return [
        ("file", str(path)),
        ("format", f".cdc version {layout.version} ({'JSON' if layout.version == 1 else 'binary'} header)"),
        ("model", header.model),
        ("model fingerprint", header.model_fingerprint),
        ("duration", f"{header.duration:.3f} s ({header.num_samples} samples at {header.original_sample_rate} Hz)"),
        ("channels", str(header.channels)),
        ("model sample rate", f"{header.sample_rate} Hz"),
        ("frames", f"{header.num_frames} at {header.frame_rate:g} Hz"),
        ("codebooks", f"{header.n_q} ({', '.join(map(str, header.codebook_sizes))} codes; "
                      f"{', '.join(map(str, header.codebook_bits))} bits)"),
        *([("segments", f"{header.grid.num_segments} of {header.segment_samples} samples every "
                        f"{header.segment_stride}{', RMS-normalised' if header.normalized else ''}")]
          if header.grid else []),
        ("header", f"{layout.header_bytes} bytes, then {after} and a {layout.checksum_bytes}-byte checksum"),
        ("nominal bitrate", f"{header.nominal_bitrate / 1000:.3f} kbps per channel"),
        ("actual bitrate", f"{actual / 1000:.3f} kbps ({layout.size} bytes in {header.duration:.3f} s: "
                           f"{100 * (actual / nominal - 1):+.1f}% on the nominal{per})"),
    ]


@app.command()
@cli_errors
def info(paths: Annotated[list[Path], typer.Argument(help=".cdc files.", show_default=False)]) -> None:
    """Print each .cdc file's header, duration and bitrate."""
    failures = 0
    for i, path in enumerate(paths):
        try:
            rows = _info_rows(path)
        except CodecError as e:
            failures += 1
            stderr.print(f"error: {e}", markup=False, soft_wrap=True)
            continue
        if i:
            stdout.print()
        for key, value in rows:
            stdout.print(f"{key + ':':<19} {value}", markup=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        stdout.print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), markup=False, soft_wrap=True)


@app.command()
@cli_errors
def models() -> None:
    """List models: folders (bundled and in $CODEC_MODELS_DIR) and codecs converted from official weights."""
    from codec.audio import AudioCodec
    from codec.audio.pretrained import PRETRAINED, hub_cache
    from codec.audio.registry import list_models, user_models_dir

    def row(name, config, parameters: int, license: str, where: str) -> tuple[str, ...]:
        kbps = config.token_spec.bandwidths()
        return (name, f"{config.sample_rate} Hz", str(config.seanet.channels), f"{config.frame_rate:.4g} Hz",
                f"{kbps[0]:.3g}-{kbps[-1]:.3g}" if len(kbps) > 1 else f"{kbps[0]:.3g}", f"{parameters / 1e6:.2f} M",
                license, where)

    rows = [("name", "sample rate", "channels", "frame rate", "kbps", "parameters", "weights license", "location")]
    for name, ckpt in list_models():
        rows.append(row(name, ckpt.config, ckpt.num_parameters, str(ckpt.metadata.get("license", "unknown")),
                        str(ckpt.path)))
    for entry in PRETRAINED.values():
        config = entry.config()
        cached = hub_cache() / entry.filename
        where = str(cached) if cached.is_file() else f"not downloaded ({entry.url})"
        rows.append(row(entry.name, config, sum(p.numel() for p in AudioCodec(config).parameters()), entry.license,
                        where))
    _print_table(rows)
    visual = [("name", "type", "tokens", "bits", "parameters", "weights license", "location")]
    for name, ckpt in list_models(model_type=None):
        if ckpt.model_type in ("image_tokenizer", "titok_tokenizer", "multiscale_tokenizer", "video_tokenizer"):
            spec = ckpt.config.token_spec
            grid = "x".join(map(str, spec.grid))
            bits = (f"{spec.kbps:.3g} kbps" if spec.frame_rate else f"{spec.bits_per_frame:.0f} per image")
            visual.append((name, ckpt.model_type, f"{grid} x {spec.n_q} levels", bits,
                           f"{ckpt.num_parameters / 1e6:.2f} M", str(ckpt.metadata.get("license", "unknown"))[:40],
                           str(ckpt.path)))
    if len(visual) > 1:
        stdout.print()
        _print_table(visual)
    stdout.print(f"Model folders: {user_models_dir()} (CODEC_MODELS_DIR); official weights: {hub_cache()} "
                 "(CODEC_HUB_CACHE).", markup=False, soft_wrap=True)


@app.command(name="eval")
@cli_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder of audio clips (recursive) or a JSONL manifest with \"path\" "
                                            "(optional \"kind\", \"text\"); a clip's transcript is its \"text\" "
                                            "or a .txt file beside it (a.flac: a.txt). Image/video tokenizers: a "
                                            "folder of images or videos, or digits, faces, samples, moving_digits "
                                            "(their test split).")],
    out: Annotated[Path, typer.Option(help="Output folder for results.json/.csv/.md, plot.png, spectrograms/.")],
    model: Annotated[Optional[list[str]], typer.Option(help="Model name or folder (repeatable; default: the default model).")] = None,
    bandwidth: Annotated[Optional[list[float]], typer.Option(help="Model bitrate in kbps (repeatable; default: every bitrate).")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="opus, codec2, mp3, or e.g. opus:6,12 codec2:3200,1300 (repeatable).")] = None,
    max_clips: Annotated[Optional[int], typer.Option(help="Use only the first N clips.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(help="Only these metrics (repeatable; default: all), "
                                                              "e.g. pesq_wb stoi mel_distance speaker_sim wer. wer: "
                                                              "word error rate of an English recogniser "
                                                              "(pocketsphinx) against the transcripts, else against "
                                                              "its transcript of the original.")] = None,
    workers: Annotated[int, typer.Option(help="Processes for scoring (PESQ, STOI, ...).")] = max(1, min(4, os.cpu_count() or 1)),
    examples: Annotated[int, typer.Option(help="Clips drawn as spectrogram comparisons.")] = 3,
    against: Annotated[Optional[list[str]], typer.Option(help="Also compare every other system with this one clip by "
                                                              "clip (mean difference ± 95% CI, clips won), by its label "
                                                              "in the table, e.g. \"Opus 6 kbps\" (repeatable).")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Compare models and classic codecs (Opus, Codec2) on the same clips: bitrate vs quality and intelligibility.
    With image or video tokenizers as --model: against JPEG and WebP (images) or H.264 and VP9 (video) at equal bits."""
    from codec.audio.registry import DEFAULT_MODEL
    from codec.eval import asr
    from codec.eval.baselines import make_baselines, parse_spec
    from codec.eval.report import markdown_table, paired_table, wer_note, write_report
    from codec.eval.runner import aggregate, evaluate as run_eval, find_clips, paired_differences
    from codec.eval.metrics import ALL_METRICS
    from codec.eval.systems import neural_systems

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    loaded_models = [_load_model(spec, device) for spec in model or []]
    if any(m.model.token_spec.modality != "audio" for m in loaded_models):
        from codec.visual_cli import evaluate_visual

        if against:
            raise CodecError("--against compares audio codecs clip by clip; drop it for image and video tokenizers.")
        return evaluate_visual(loaded_models, data, out, max_clips, bandwidth, baseline, metric)
    if metric and (unknown := sorted(set(metric) - {m.name for m in ALL_METRICS})):
        raise CodecError(f"Unknown metric(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(m.name for m in ALL_METRICS)}.")
    clips = find_clips(data, max_clips)
    baselines, warnings = make_baselines(baseline or [])
    if not metric and not asr.available():
        metric = [m.name for m in ALL_METRICS if m.name != "wer"]
        warnings.append("pocketsphinx was not found; WER is skipped (pip install pocketsphinx).")
    for warning in warnings:
        stderr.print(f"warning: {warning}", markup=False, soft_wrap=True)
    systems = []
    for spec in model or ([DEFAULT_MODEL] if DEFAULT_MODEL else []):
        loaded = _load_model(spec, device)
        try:
            # a folder is shown as parent/folder, e.g. runs-name/best
            name = "/".join(loaded.path.parts[-2:]) if loaded.path is not None else loaded.name
            systems += neural_systems(loaded.model, name, loaded.fingerprint, bandwidth)
        except ValueError as e:
            raise CodecError(f"Cannot evaluate {loaded.name} at that bitrate: {e}.") from None
    systems += baselines
    if not systems:
        raise CodecError("Nothing to evaluate: pass --model and/or --baseline.")
    labels = [s.label for s in systems]
    skipped = {b.label for spec in baseline or [] for b in parse_spec(spec)} - set(labels)  # tool not installed
    if unknown := [a for a in against or [] if a not in labels and a not in skipped]:
        raise CodecError(f"--against {unknown[0]!r} is none of the systems evaluated: {', '.join(map(repr, labels))}.")
    for label in [a for a in against or [] if a in skipped]:
        stderr.print(f"warning: no clip-by-clip comparison with {label}: its program is not installed.", markup=False,
                     soft_wrap=True)
    against = [a for a in against or [] if a in labels]
    with Progress(console=stderr) as progress:
        task = progress.add_task("coding", total=len(clips) * len(systems))
        results = run_eval(systems, clips, workers, examples, lambda: progress.advance(task), metric)
    if not results.rows:
        raise CodecError(f"No clip in {data} could be evaluated ({len(results.unreadable)} unreadable).")
    metrics = [m.name for m in ALL_METRICS if any(r.get(m.name) is not None for r in results.rows)]
    summaries = aggregate(results.rows, metrics)
    paired = [e for label in dict.fromkeys(against) for e in paired_differences(results.rows, label, metrics)]
    write_report(out, results, summaries, metrics, warnings, force=True, paired=paired)
    shown = [m for m in ("pesq_wb", "stoi", "wer", "mel_distance", "speaker_sim") if m in metrics]
    stdout.print(markdown_table(summaries, shown), markup=False, soft_wrap=True)
    if paired:
        stdout.print(paired_table(paired, shown), markup=False, soft_wrap=True)
    if "wer" in metrics:
        stdout.print(wer_note(results.rows), markup=False, soft_wrap=True)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png", markup=False)
    if results.unreadable:
        stderr.print(f"{len(results.unreadable)} clips could not be read (listed in results.md).", markup=False)


def _recipe_list() -> str:
    from codec.recipebook import shipped_recipes

    return "\n\n".join(shipped_recipes()) or "(none found)"


@app.command(help=f"""Train a codec from a recipe (YAML), on CPU, a GPU or many (torchrun).

A run folder (default runs/<recipe folder>-<recipe name>) receives the resolved config,
TensorBoard logs, checkpoints and the best model (run folder/best). Ctrl-C saves a
checkpoint; --resume continues from the last one.

Shipped recipes (give the name or a path):\n\n{_recipe_list()}""")
@cli_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML or a shipped recipe's name, e.g. librispeech/codec16k.",
                                           show_default=False)],
    data_dir: Annotated[Optional[Path], typer.Option(help="Corpus root folder (overrides data.data_dir).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value: key.path=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the run folder from its last checkpoint.")] = False,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<folder>-<name>).")] = None,
) -> None:
    from codec.train import run_training
    from codec.recipebook import find_recipe

    results = run_training(find_recipe(recipe), run_dir, overrides or [], str(data_dir) if data_dir else None, resume)
    if results:
        stdout.print("final validation: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()), markup=False)


app.command()(slm_cli.tokenize)
app.add_typer(slm_cli.app, name="slm")
app.command()(visual_cli.sample)
app.add_typer(visual_cli.lm_app, name="lm")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
