"""The `codec slm` commands (spoken language models) and `codec tokenize`: thin wrappers over slm/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import Progress

from codec.cli_support import Device, Force, Output, Workers, cli_errors, levels_for, load_model, stderr, stdout
from codec.errors import CodecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Spoken language models over codec tokens.")


@cli_errors
def tokenize(  # `codec tokenize`: cli.py registers it on the main app
    data: Annotated[Path, typer.Option(help="Folder of audio (recursive), JSONL manifest with \"path\", or a recipe.")],
    out: Annotated[Path, typer.Option(help="Output folder for the token shards and index.json.")],
    model: Annotated[Optional[str], typer.Option(help="Codec name or folder (default: the default model).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="A recipe's corpus folder.")] = None,
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
    n_q = levels_for(load_model(model, device).model.config.token_spec, None, n_q)
    sources = find_sources(data, out, str(data_dir) if data_dir else None)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 reports for all
    with Progress(console=stderr, disable=not main_process) as progress:
        task = progress.add_task("shards", total=-(-len(sources) // shard_size))
        index = run_tokenize(sources, out, model, device, n_q, shard_size, workers, lambda: progress.advance(task))
    if main_process:
        stdout.print(f"wrote {index.num_utterances} utterances ({index.hours:.2f} h, {index.num_frames} frames of "
                     f"{index.token_spec.n_q} codes) in {len(index.shards)} shards to {out}", markup=False)


@app.command("train")
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


@app.command("generate")
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


@app.command("corpus")
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


@app.command("eval")
@cli_errors
def slm_eval(
    checkpoint: Annotated[str, typer.Option(help="LM model folder (a run's best/).")],
    shards: Annotated[Path, typer.Option(help="The training shards (n-gram baselines; their held-out utterances).")],
    out: Annotated[Path, typer.Option(help="Report folder: results.json/.csv/.md, plot.png.")],
    test: Annotated[Optional[Path], typer.Option(help="Held-out shards (default: the training run's held-out utterances).")] = None,
    pairs: Annotated[Optional[list[Path]], typer.Option(help="pairs.jsonl or a ZeroSpeech-style folder (repeatable).")] = None,
    valid_utterances: Annotated[int, typer.Option(help="Held-out utterances when --test is not given.")] = 16,
    prompts: Annotated[Optional[Path], typer.Option(help="Prompt audio (folder or manifest; speaker = its folder "
                                                          "unless the manifest says) for continuation speaker similarity.")] = None,
    num_prompts: Annotated[int, typer.Option(help="Prompts to continue (spread over speakers).")] = 16,
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of each prompt kept.")] = 1.0,
    continue_seconds: Annotated[float, typer.Option(help="Seconds generated after each prompt.")] = 2.0,
    codec_model: Annotated[Optional[str], typer.Option("--codec", help="The LM's codec, if not found by name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Held-out bits per token and per second against unigram/bigram models, and minimal-pair accuracy."""
    from codec.devices import parse_device
    from slm.eval import judge_pairs, lm_bits, ngram_bits, read_pairs, write_report
    from slm.generate import load_codec_for, load_lm
    from slm.shards import load_utterances
    from slm.train import split_held_out

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    target = parse_device(device)
    lm = load_lm(checkpoint, target)
    index, items = load_utterances(shards)
    if index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
        raise CodecError(f"{shards} holds codes of another codec than the LM's ({index.tokenizer}).")
    train, held_out = split_held_out(items, valid_utterances)
    if test is not None:
        train = [c for _, c in items]
    if test is not None:
        test_index, test_items = load_utterances(test)
        if test_index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
            raise CodecError(f"{test} holds codes of another codec than the LM's ({test_index.tokenizer}).")
        held_out = [c for _, c in test_items]
    n_q, sizes = lm.config.n_q, lm.config.codebook_sizes
    train, held_out = [c[:n_q] for c in train], [c[:n_q] for c in held_out]
    bits = {"token LM": lm_bits(lm, held_out), "bigram": ngram_bits(train, held_out, sizes, 2),
            "unigram": ngram_bits(train, held_out, sizes, 1)}
    accuracies = []
    if pairs:
        codec = load_codec_for(lm, codec_model, target)
        for source in pairs:
            accuracies += judge_pairs(lm, codec, read_pairs(source))
    continuation = None
    if prompts is not None:
        from slm.eval import continuation_speakers
        from slm.sampling import SamplingConfig
        from slm.tokenize import find_sources

        codec = load_codec_for(lm, codec_model, target)
        by_speaker: dict[str, list] = {}
        for source in find_sources(prompts):
            by_speaker.setdefault(source.speaker or source.path.parent.name, []).append(source.path)
        chosen = [(paths[i], speaker) for i in range(num_prompts) for speaker, paths in sorted(by_speaker.items())
                  if i < len(paths)][:num_prompts]
        continuation = continuation_speakers(lm, codec, chosen, prompt_seconds, continue_seconds,
                                             SamplingConfig(top_k=50, repetition_window=10))
    table = write_report(out, bits, lm.config.frame_rate, accuracies, continuation, force=True)
    stdout.print(table, markup=False)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png", markup=False)
