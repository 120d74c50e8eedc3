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
    name: str  # a registered name, or a model folder's name (never a local path)
    path: Path | None  # the folder or file it was loaded from, if given as a path
    fingerprint: str


@functools.lru_cache(maxsize=4)
def _load_model(spec: Optional[str], device: str) -> _LoadedModel:
    from codec.audio import from_pretrained, model_fingerprint
    from codec.audio.registry import DEFAULT_MODEL
    from codec.devices import parse_device

    model = from_pretrained(spec, parse_device(device))
    name = spec or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.exists():  # files record the model's name, not where it lies on this machine
        from codec.audio.pretrained import entry_for_file

        path = path.resolve()
        entry = entry_for_file(path) if path.is_file() else None
        return _LoadedModel(model, entry.name if entry else path.name, path, model_fingerprint(model))
    return _LoadedModel(model, name, None, model_fingerprint(model))


def _levels(spec, bandwidth: Optional[float], n_q: Optional[int]) -> int:
    """Codebook levels for --bandwidth or --n-q (default: all) of a model's full TokenSpec."""
    available = f"available: {', '.join(f'{b:g}' for b in spec.bandwidths())} kbps"
    if bandwidth is not None and n_q is not None:
        raise CodecError("Pass either --bandwidth or --n-q, not both.")
    if n_q is not None and not 1 <= n_q <= spec.n_q:
        raise CodecError(f"--n-q must be between 1 and {spec.n_q} for this model, got {n_q}.")
    if bandwidth is None:
        return n_q or spec.n_q
    try:
        return spec.n_q_for_kbps(bandwidth)
    except ValueError as e:
        raise CodecError(f"Cannot use that bitrate: {e} ({available}).") from None


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
    from codec.audio.io import read_audio

    loaded = _load_model(model, device)
    encoded = encode_audio(loaded.model, read_audio(src), n_q, downmix, batch_size=batch)
    write_cdc(dst, CdcHeader.for_encoded(encoded, loaded.name, loaded.fingerprint), encoded.codes, force)


def _decode_file(src: Path, dst: Path, model: Optional[str], device: str, force: bool) -> None:
    from codec.audio.bitstream import read_cdc
    from codec.audio.compress import decode_audio
    from codec.audio.io import write_audio

    header, codes = read_cdc(src)
    try:
        loaded = _load_model(model or header.model, device)
    except CodecError as e:
        raise CodecError(f"Cannot decode {src}: its model {header.model!r} cannot be loaded here "
                         f"({str(e).rstrip('.')}); pass --model with that model's name or folder.") from None
    if loaded.fingerprint != header.model_fingerprint:
        raise CodecError(f"{src} was made by a different model (fingerprint {header.model_fingerprint}) "
                         f"than {loaded.name} (fingerprint {loaded.fingerprint}).")
    codec = loaded.model
    header.check_model(codec.config.token_spec, codec.sample_rate, codec.channels, source=f"Input file '{src}'")
    write_audio(dst, decode_audio(loaded.model, header.encoded(codes)).samples, header.original_sample_rate, force)


Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
Device = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:N or auto.")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", show_default=False,
                                               help="Output file for one input, or a folder for several.")]
Workers = Annotated[int, typer.Option(min=1, help="Files coded at once, each in its own process.")]


@app.command()
@cli_errors
def encode(
    inputs: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, OGG, Opus, MP3).", show_default=False)],
    output: Output = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name or model folder.")] = None,
    bandwidth: Annotated[Optional[float], typer.Option(help="Target bitrate in kbps (the highest that fits).")] = None,
    n_q: Annotated[Optional[int], typer.Option("--n-q", help="Number of codebooks (sets the bitrate).")] = None,
    downmix: Annotated[bool, typer.Option(help="Average all channels to mono before coding.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Non-causal models: segments coded at once (faster on a GPU; "
                                                   "may flip near-tie codes).")] = 1,
    workers: Workers = 1,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Compress audio files into .cdc token files."""
    from codec.files import check_writable
    from codec.jobs import plan_outputs

    outputs = plan_outputs(inputs, output, ".cdc")
    for dst in outputs:
        check_writable(dst, force)
    levels = _levels(_load_model(model, device).model.config.token_spec, bandwidth, n_q)
    work = functools.partial(_encode_file, model=model, device=device, n_q=levels, downmix=downmix, batch=batch,
                             force=force)
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
    sample rate and length."""
    from codec.devices import parse_device
    from codec.files import check_writable
    from codec.jobs import plan_outputs

    outputs = plan_outputs(inputs, output, ".wav")
    for dst in outputs:
        check_writable(dst, force)
    parse_device(device)
    _run_each(list(zip(inputs, outputs)), functools.partial(_decode_file, model=model, device=device, force=force),
              workers)


def _info_rows(path: Path) -> list[tuple[str, str]]:
    from codec.audio.bitstream import header_overhead, read_cdc

    header, _ = read_cdc(path)
    size = path.stat().st_size
    return [
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
            # a folder is shown as parent/folder, e.g. runs-name/best
            name = "/".join(loaded.path.parts[-2:]) if loaded.path is not None else loaded.name
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


@app.command()
@cli_errors
def tokenize(
    data: Annotated[Path, typer.Option(help="Folder of audio (recursive), JSONL manifest with \"path\", or a recipe.")],
    out: Annotated[Path, typer.Option(help="Output folder for the token shards and index.json.")],
    model: Annotated[Optional[str], typer.Option(help="Codec name or folder (default: the default model).")] = None,
    n_q: Annotated[Optional[int], typer.Option("--n-q", help="Codebook levels to keep (default: all).")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Utterances per shard.")] = 500,
    continuous: Annotated[bool, typer.Option(help="Pre-quantization latents instead of codes (not yet).")] = False,
    workers: Workers = 1,
    device: Device = "cpu",
) -> None:
    """Turn a speech corpus into token shards for the language models (resumable: rerun to continue)."""
    from slm.tokenize import find_sources, tokenize as run_tokenize

    if continuous:
        raise CodecError("--continuous (latent shards) is not implemented yet; tokenize without it.")
    spec = _load_model(model, device).model.config.token_spec
    if n_q is not None and not 1 <= n_q <= spec.n_q:
        raise CodecError(f"--n-q must be between 1 and {spec.n_q} for this model, got {n_q}.")
    sources = find_sources(data, out)
    with Progress(console=stderr) as progress:
        task = progress.add_task("shards", total=-(-len(sources) // shard_size))
        index = run_tokenize(sources, out, model, device, n_q, shard_size, workers, lambda: progress.advance(task))
    stdout.print(f"wrote {index.num_utterances} utterances ({index.hours:.2f} h, {index.num_frames} frames of "
                 f"{index.token_spec.n_q} codes) in {len(index.shards)} shards to {out}", markup=False)


slm_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Spoken language models over codec tokens.")
app.add_typer(slm_app, name="slm")


@slm_app.command("train")
@cli_errors
def slm_train(
    config: Annotated[Path, typer.Argument(help="LM recipe YAML or a shipped one's name, e.g. devspeech/token_lm.",
                                           show_default=False)],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value: key.path=value.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the run folder from its last checkpoint.")] = False,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<folder>-<name>).")] = None,
) -> None:
    """Train a token language model on shards from `codec tokenize` (resumable, TensorBoard, torchrun)."""
    from codec.recipebook import find_recipe
    from codec.train import run_training

    results = run_training(find_recipe(config), run_dir, overrides or [], None, resume)
    if results:
        stdout.print("final validation: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()), markup=False)


@slm_app.command("generate")
@cli_errors
def slm_generate(
    checkpoint: Annotated[str, typer.Option(help="LM model folder (a run's best/ or a checkpoint's model/).")],
    prompt: Annotated[list[Path], typer.Option(help="Prompt audio (repeatable: one batch).")],
    seconds: Annotated[float, typer.Option(help="Seconds of audio to generate after each prompt.")] = 3.0,
    output: Output = None,
    prompt_seconds: Annotated[Optional[float], typer.Option(help="Keep only the last N seconds of each prompt.")] = None,
    temperature: Annotated[float, typer.Option(help="0: greedy.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely codes (0: all).")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling probability mass.")] = 1.0,
    repetition_window: Annotated[int, typer.Option(help="Repetition-aware sampling over N past tokens (0: off).")] = 0,
    seed: int = 0,
    codec_model: Annotated[Optional[str], typer.Option("--codec", help="The LM's codec, if not found by name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Continue spoken prompts with a token LM; writes prompt + continuation as audio."""
    from codec.audio.io import write_audio
    from codec.devices import parse_device
    from codec.files import check_writable
    from codec.jobs import plan_outputs
    from slm.generate import continue_prompts, load_codec_for, load_lm
    from slm.sampling import SamplingConfig

    try:
        sampling = SamplingConfig(temperature, top_k, top_p, repetition_window)
    except ValueError as e:
        raise CodecError(f"Invalid sampling options: {e}.") from None
    outputs = plan_outputs([p.with_name(f"{p.stem}_continued{p.suffix}") for p in prompt], output, ".wav")
    for dst in outputs:
        check_writable(dst, force)
    target = parse_device(device)
    lm = load_lm(checkpoint, target)
    codec = load_codec_for(lm, codec_model, target)
    for result, dst in zip(continue_prompts(lm, codec, prompt, seconds, sampling, seed, prompt_seconds), outputs):
        write_audio(dst, result.audio, codec.sample_rate, force)
        stdout.print(f"wrote {dst} ({result.prompt_frames} prompt frames + "
                     f"{result.codes.shape[-1] - result.prompt_frames} generated)", markup=False)


@slm_app.command("corpus")
@cli_errors
def slm_corpus(
    out: Annotated[Path, typer.Option(help="Output folder (rerun to resume).")],
    minutes: Annotated[float, typer.Option(help="Minutes of training speech (about).")] = 60.0,
    pairs: Annotated[int, typer.Option(help="Minimal pairs of each kind (lexical, syntactic), held-out voices.")] = 200,
    seed: int = 0,
    workers: Annotated[int, typer.Option(min=1, help="TTS processes at once.")] = 2,
) -> None:
    """Synthesize a speech corpus (grammar sentences, many offline TTS voices) with held-out voices
    and minimal pairs for evaluation."""
    from codec.data.tts import VOICES, available_engines
    from slm.corpus import build_corpus, count_jobs

    missing = {v.engine for v in VOICES} - available_engines()
    if missing:
        raise CodecError(f"Missing TTS engines: {', '.join(sorted(missing))} (apt-get install espeak-ng flite festival).")
    if not minutes > 0 or pairs < 0:
        raise CodecError("--minutes must be positive and --pairs at least 0.")
    with Progress(console=stderr) as progress:
        task = progress.add_task("synthesizing", total=count_jobs(minutes, pairs))
        made = build_corpus(out, minutes, pairs, seed, workers, advance=lambda: progress.advance(task))
    stdout.print(", ".join(f"{split} {m:.1f} min" for split, m in made.items()) + f" in {out}", markup=False)


@slm_app.command("eval")
@cli_errors
def slm_eval(
    checkpoint: Annotated[str, typer.Option(help="LM model folder (a run's best/).")],
    shards: Annotated[Path, typer.Option(help="The training shards (n-gram baselines; their held-out utterances).")],
    out: Annotated[Path, typer.Option(help="Report folder: results.json/.csv/.md, plot.png.")],
    test: Annotated[Optional[Path], typer.Option(help="Held-out shards (default: the training run's held-out utterances).")] = None,
    pairs: Annotated[Optional[list[Path]], typer.Option(help="pairs.jsonl or a ZeroSpeech-style folder (repeatable).")] = None,
    valid_utterances: Annotated[int, typer.Option(help="Held-out utterances when --test is not given.")] = 16,
    codec_model: Annotated[Optional[str], typer.Option("--codec", help="The LM's codec, if not found by name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Held-out bits per token and per second against unigram/bigram models, and minimal-pair accuracy."""
    from codec.devices import parse_device
    from slm.eval import judge_pairs, lm_bits, ngram_bits, read_pairs, write_report
    from slm.generate import load_codec_for, load_lm
    from slm.shards import load_utterances
    from slm.train import is_held_out

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    target = parse_device(device)
    lm = load_lm(checkpoint, target)
    index, items = load_utterances(shards)
    if index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
        raise CodecError(f"{shards} holds codes of another codec than the LM's ({index.tokenizer}).")
    held = max(1, round(256 * valid_utterances / max(1, len(items))))
    train = [c for u, c in items if test is not None or not is_held_out(u.id, held)]
    if test is not None:
        test_index, test_items = load_utterances(test)
        if test_index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
            raise CodecError(f"{test} holds codes of another codec than the LM's ({test_index.tokenizer}).")
        held_out = [c for _, c in test_items]
    else:
        held_out = [c for u, c in items if is_held_out(u.id, held)][:valid_utterances]
    n_q, sizes = lm.config.n_q, lm.config.codebook_sizes
    train, held_out = [c[:n_q] for c in train], [c[:n_q] for c in held_out]
    bits = {"token LM": lm_bits(lm, held_out), "bigram": ngram_bits(train, held_out, sizes, 2),
            "unigram": ngram_bits(train, held_out, sizes, 1)}
    accuracies = []
    if pairs:
        codec = load_codec_for(lm, codec_model, target)
        for source in pairs:
            accuracies += judge_pairs(lm, codec, read_pairs(source))
    table = write_report(out, bits, lm.config.frame_rate, accuracies, force=True)
    stdout.print(table, markup=False)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png", markup=False)


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
