"""The ``codec`` command line: thin wrappers over the library (see DESIGN.md section 4).

Errors print one sentence on stderr and exit non-zero; outputs are written atomically and
existing files are only replaced with --force. CODEC_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.progress import Progress

from codec.errors import CodecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural audio codec toolkit: compress speech to tokens and back.")
stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    stderr.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def cli_errors(command: Callable) -> Callable:
    """Turn library errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CodecError as e:
            raise _fail(str(e)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted.", 130) from None
        except Exception as e:  # noqa: BLE001 - last resort: never show a traceback to users
            if os.environ.get("CODEC_DEBUG"):
                raise
            raise _fail(f"unexpected {type(e).__name__}: {e} (set CODEC_DEBUG=1 for details).", 2) from None

    return wrapper


@dataclass
class _LoadedModel:
    """A model with the name and fingerprint that .cdc files record."""

    model: object
    name: str
    fingerprint: str


@functools.lru_cache(maxsize=4)
def _load_model(spec: Optional[str], device: str) -> _LoadedModel:
    from codec.audio import from_pretrained, model_fingerprint
    from codec.audio.registry import DEFAULT_MODEL

    model = from_pretrained(spec, device)
    name = spec or DEFAULT_MODEL
    if Path(name).expanduser().exists():
        name = str(Path(name).expanduser().resolve())
    return _LoadedModel(model, name, model_fingerprint(model))


def _outputs(inputs: list[Path], output: Optional[Path], suffix: str) -> list[Path]:
    """Output paths: -o is the file for one input, or a folder for several."""
    if output is None:
        return [p.with_suffix(suffix) for p in inputs]
    if len(inputs) == 1 and not output.is_dir():
        return [output]
    if output.exists() and not output.is_dir():
        raise CodecError(f"With several inputs, -o must be a folder, and {output} is a file.")
    output.mkdir(parents=True, exist_ok=True)
    return [output / p.with_suffix(suffix).name for p in inputs]


def _run_each(inputs: list[Path], outputs: list[Path], work: Callable[[Path, Path], None]) -> None:
    """Run ``work`` per file, with a progress bar for several; report each failure, exit 1 if any."""
    failures = 0
    with Progress(console=stderr, disable=len(inputs) < 2) as progress:
        task = progress.add_task("files", total=len(inputs))
        for src, dst in zip(inputs, outputs):
            try:
                work(src, dst)
            except CodecError as e:
                failures += 1
                stderr.print(f"error: {e}", markup=False, soft_wrap=True)
            progress.advance(task)
    if failures:
        if len(inputs) > 1:
            stderr.print(f"{failures} of {len(inputs)} files failed.", markup=False)
        raise typer.Exit(1)


Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
Device = Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")]


@app.command()
@cli_errors
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, OGG, Opus, MP3).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output .cdc file, or a folder for several inputs.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name or model folder.")] = None,
    bandwidth: Annotated[Optional[float], typer.Option(help="Target bitrate in kbps (the highest that fits).")] = None,
    n_q: Annotated[Optional[int], typer.Option("--n-q", help="Number of codebooks (sets the bitrate).")] = None,
    downmix: Annotated[bool, typer.Option(help="Average all channels to mono before coding.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Non-causal models: segments coded at once (faster on a GPU; "
                                                   "may flip near-tie codes).")] = 1,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Compress audio files into .cdc token files."""
    from codec.audio.bitstream import CdcHeader, write_cdc
    from codec.audio.compress import encode_audio
    from codec.audio.io import read_audio
    from codec.files import check_writable

    if bandwidth is not None and n_q is not None:
        raise CodecError("Pass either --bandwidth or --n-q, not both.")
    outputs = _outputs(inputs, output, ".cdc")
    for dst in outputs:
        check_writable(dst, force)
    loaded = _load_model(model, device)
    spec = loaded.model.config.token_spec  # every level: the model's highest bitrate
    try:
        levels = spec.n_q_for_kbps(bandwidth) if bandwidth is not None else (n_q or spec.n_q)
        spec.with_num_codebooks(levels)
    except ValueError as e:
        raise CodecError(f"Cannot use that bitrate: {e}; available: {', '.join(f'{b:g}' for b in spec.bandwidths())} kbps.") from None

    def work(src: Path, dst: Path) -> None:
        encoded = encode_audio(loaded.model, read_audio(src), levels, downmix, batch_size=batch)
        write_cdc(dst, CdcHeader.for_encoded(encoded, loaded.name, loaded.fingerprint), encoded.codes, force)

    _run_each(inputs, outputs, work)


@app.command()
@cli_errors
def decode(
    inputs: Annotated[list[Path], typer.Argument(help=".cdc files.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output audio file (.wav, .flac, ...), or a folder.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model to decode with (default: the one named in the file).")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Decode .cdc files back to audio at the original sample rate and length."""
    from codec.audio.bitstream import read_cdc
    from codec.audio.compress import decode_audio
    from codec.audio.io import write_audio
    from codec.files import check_writable

    outputs = _outputs(inputs, output, ".wav")
    for dst in outputs:
        check_writable(dst, force)

    def work(src: Path, dst: Path) -> None:
        header, codes = read_cdc(src)
        try:
            loaded = _load_model(model or header.model, device)
        except CodecError as e:
            raise CodecError(f"Cannot decode {src}: its model {header.model!r} cannot be loaded here "
                             f"({str(e).rstrip('.')}); pass --model.") from None
        if loaded.fingerprint != header.model_fingerprint:
            raise CodecError(f"{src} was made by a different model (fingerprint {header.model_fingerprint}) "
                             f"than {loaded.name} (fingerprint {loaded.fingerprint}).")
        write_audio(dst, decode_audio(loaded.model, header.encoded(codes)).samples, header.original_sample_rate, force)

    _run_each(inputs, outputs, work)


@app.command()
@cli_errors
def info(path: Annotated[Path, typer.Argument(help="A .cdc file.", show_default=False)]) -> None:
    """Print a .cdc file's header, duration and bitrate."""
    from codec.audio.bitstream import header_overhead, read_cdc

    header, _ = read_cdc(path)
    size = path.stat().st_size
    rows = [
        ("file", str(path)),
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
        ("nominal bitrate", f"{header.nominal_bitrate / 1000:.3f} kbps per channel"),
        ("actual bitrate", f"{header.actual_bitrate(size) / 1000:.3f} kbps (file {size} bytes, "
                           f"header {header_overhead(header)} bytes)"),
    ]
    for key, value in rows:
        stdout.print(f"{key + ':':<19} {value}", markup=False, soft_wrap=True)


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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        stdout.print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), markup=False, soft_wrap=True)
    stdout.print(f"Model folders: {user_models_dir()} (CODEC_MODELS_DIR); official weights: {hub_cache()} "
                 "(CODEC_HUB_CACHE).", markup=False, soft_wrap=True)


@app.command(name="eval")
@cli_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Folder of audio clips (recursive) or a JSONL manifest with \"path\".")],
    out: Annotated[Path, typer.Option(help="Output folder for results.json/.csv/.md, plot.png, spectrograms/.")],
    model: Annotated[Optional[list[str]], typer.Option(help="Model name or folder (repeatable; default: the default model).")] = None,
    bandwidth: Annotated[Optional[list[float]], typer.Option(help="Model bitrate in kbps (repeatable; default: every bitrate).")] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(help="opus, codec2, mp3, or e.g. opus:6,12 codec2:3200,1300 (repeatable).")] = None,
    max_clips: Annotated[Optional[int], typer.Option(help="Use only the first N clips.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(help="Only these metrics (repeatable; default: all), "
                                                              "e.g. pesq_wb stoi mel_distance speaker_sim.")] = None,
    workers: Annotated[int, typer.Option(help="Processes for scoring (PESQ, STOI, ...).")] = max(1, min(4, os.cpu_count() or 1)),
    examples: Annotated[int, typer.Option(help="Clips drawn as spectrogram comparisons.")] = 3,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Compare models and classic codecs (Opus, Codec2) on the same clips: bitrate vs quality."""
    from codec.audio.registry import DEFAULT_MODEL
    from codec.eval.baselines import make_baselines
    from codec.eval.report import markdown_table, write_report
    from codec.eval.runner import aggregate, evaluate as run_eval, find_clips
    from codec.eval.metrics import METRICS
    from codec.eval.systems import neural_systems

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    if metric and (unknown := sorted(set(metric) - {m.name for m in METRICS})):
        raise CodecError(f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(m.name for m in METRICS)}.")
    clips = find_clips(data, max_clips)
    baselines, warnings = make_baselines(baseline or [])
    for warning in warnings:
        stderr.print(f"warning: {warning}", markup=False, soft_wrap=True)
    systems = []
    for spec in model or ([DEFAULT_MODEL] if DEFAULT_MODEL else []):
        loaded = _load_model(spec, device)
        try:
            path = Path(loaded.name)  # a folder is shown as parent/folder, e.g. runs-name/best
            name = "/".join(path.parts[-2:]) if path.is_absolute() else loaded.name
            systems += neural_systems(loaded.model, name, loaded.fingerprint, bandwidth)
        except ValueError as e:
            raise CodecError(f"Cannot evaluate {loaded.name} at that bitrate: {e}.") from None
    systems += baselines
    if not systems:
        raise CodecError("Nothing to evaluate: pass --model and/or --baseline.")
    with Progress(console=stderr) as progress:
        task = progress.add_task("coding", total=len(clips) * len(systems))
        results = run_eval(systems, clips, workers, examples, lambda: progress.advance(task), metric)
    if not results.rows:
        raise CodecError(f"No clip in {data} could be evaluated ({len(results.unreadable)} unreadable).")
    metrics = [m.name for m in METRICS if any(r.get(m.name) is not None for r in results.rows)]
    summaries = aggregate(results.rows, metrics)
    write_report(out, results, summaries, metrics, warnings, force=True)
    stdout.print(markdown_table(summaries, [m for m in ("pesq_wb", "stoi", "mel_distance", "speaker_sim")
                                            if m in metrics]), markup=False, soft_wrap=True)
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
