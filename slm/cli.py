"""The `codec slm` commands (spoken language models) and `codec tokenize`: thin wrappers over slm/."""

from __future__ import annotations

import os
from dataclasses import replace
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
    continuous: Annotated[bool, typer.Option(help="The codec's pre-quantization latents (float16, with their "
                                                  "mean and std in index.json) instead of codes.")] = False,
    workers: Workers = 1,
    device: Device = "cpu",
) -> None:
    """Turn a speech corpus into token shards for the language models (resumable: rerun to continue)."""
    from codec.devices import apply_threads
    from slm.tokenize import find_sources, tokenize as run_tokenize

    if continuous and n_q is not None:
        raise CodecError("--n-q does not apply to --continuous: latents are taken before quantization.")
    apply_threads()  # under torchrun, this machine's ranks share its CPUs
    spec = load_model(model, device).model.config.token_spec
    n_q = None if continuous else levels_for(spec, None, n_q)
    sources = find_sources(data, out, str(data_dir) if data_dir else None)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 reports for all
    with Progress(console=stderr, disable=not main_process) as progress:
        task = progress.add_task("shards", total=-(-len(sources) // shard_size))
        index = run_tokenize(sources, out, model, device, n_q, shard_size, workers, lambda: progress.advance(task),
                             continuous)
    if main_process:
        what = f"latents of {index.width} dims" if continuous else f"{index.token_spec.n_q} codes"
        stdout.print(f"wrote {index.num_utterances} utterances ({index.hours:.2f} h, {index.num_frames} frames of "
                     f"{what}) in {len(index.shards)} shards to {out}", markup=False)


@app.command("train")
@cli_errors
def slm_train(
    config: Annotated[Path, typer.Argument(help="LM recipe YAML or a shipped one's name, e.g. devspeech/token_lm.",
                                           show_default=False)],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value: key.path=value.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the run folder from its last checkpoint.")] = False,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<folder>-<name>).")] = None,
) -> None:
    """Train a language model: spoken LMs on shards from `codec tokenize`, or image and video generators
    (task image_generator; the same as `codec train`); resumable, TensorBoard, torchrun."""
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
    head_steps: Annotated[int, typer.Option(help="Latent LM: ODE steps of the flow head per frame.")] = 20,
    solver: Annotated[str, typer.Option(help="Latent LM: euler, midpoint or heun.")] = "euler",
    guidance: Annotated[float, typer.Option(help="Latent LM: classifier-free guidance scale (1: none).")] = 1.0,
    shift: Annotated[float, typer.Option(help="Latent LM: time shift of the ODE grid (>1: more steps near noise).")] = 1.0,
    seed: int = 0,
    codec_model: Annotated[Optional[str], typer.Option("--codec", help="The LM's codec, if not found by name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Continue spoken prompts with a token LM or a latent LM; writes prompt + continuation as audio.
    For a latent LM the temperature scales the flow head's initial noise."""
    from codec.audio.io import write_audio
    from codec.devices import apply_threads, parse_device
    from codec.files import check_writable
    from codec.jobs import plan_outputs
    from slm.generate import continue_prompts, load_codec_for, load_lm
    from slm.latent_model import LatentLM, SamplingOptions
    from slm.sampling import SamplingConfig

    outputs = plan_outputs([p.with_name(f"{p.stem}_continued{p.suffix}") for p in prompt], output, ".wav")
    for dst in outputs:
        check_writable(dst, force)
    target = parse_device(device)
    apply_threads()
    lm = load_lm(checkpoint, target)
    try:
        if isinstance(lm, LatentLM):
            sampling = SamplingOptions(head_steps, solver, temperature, guidance, shift)
        else:
            sampling = SamplingConfig(temperature, top_k, top_p, repetition_window)
    except ValueError as e:
        raise CodecError(f"Invalid sampling options: {e}.") from None
    codec = load_codec_for(lm, codec_model, target)
    for result, dst in zip(continue_prompts(lm, codec, prompt, seconds, sampling, seed, prompt_seconds), outputs):
        write_audio(dst, result.audio, codec.sample_rate, force)
        stdout.print(f"wrote {dst} ({result.prompt_frames} prompt frames + "
                     f"{result.sequence.shape[-1] - result.prompt_frames} generated)", markup=False)


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
    prompts: Annotated[Optional[Path], typer.Option(help="Held-out utterances to continue (folder or manifest; speaker = "
                                                          "its folder unless the manifest says; transcripts from the "
                                                          "manifest or .txt files) for speaker similarity and ASR WER.")] = None,
    num_prompts: Annotated[int, typer.Option(help="Prompts to continue (spread over speakers).")] = 16,
    prompt_seconds: Annotated[float, typer.Option(help="Seconds of each utterance given as the prompt; the LM "
                                                       "continues it to the utterance's length.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed for continuations.")] = 0,
    compare: Annotated[Optional[str], typer.Option(help="Latent LM: a token LM (model folder) continued on the same "
                                                        "prompts, side by side.")] = None,
    head_steps: Annotated[int, typer.Option(help="Latent LM: ODE steps of the flow head per frame.")] = 20,
    solver: Annotated[str, typer.Option(help="Latent LM: euler, midpoint or heun.")] = "euler",
    sweep: Annotated[bool, typer.Option(help="Latent LM: distances and speed vs head steps and temperature.")] = True,
    codec_model: Annotated[Optional[str], typer.Option("--codec", help="The LM's codec, if not found by name.")] = None,
    force: Force = False,
    device: Device = "cpu",
) -> None:
    """Token LM: held-out bits per token and per second against unigram/bigram models, minimal-pair
    accuracy, continuations. Latent LM: held-out flow loss, continuations side by side with a token LM
    (--compare) and baselines, quality and speed vs the flow head's steps and temperature."""
    from codec.devices import apply_threads, parse_device
    from slm.eval import NgramModel, judge_pairs, lm_bits, read_pairs, write_report
    from slm.generate import load_codec_for, load_lm
    from slm.latent_model import LatentLM
    from slm.shards import load_utterances
    from slm.train import split_held_out

    if (out / "results.json").exists() and not force:
        raise CodecError(f"{out} already holds results; pass --force to overwrite them.")
    target = parse_device(device)
    apply_threads()
    lm = load_lm(checkpoint, target)
    if isinstance(lm, LatentLM):
        if pairs:
            raise CodecError("Minimal pairs are judged by likelihood, which a flow-matching head does not give; "
                             "drop --pairs for a latent LM.")
        _eval_latent(lm, shards, out, test, valid_utterances, prompts, num_prompts, prompt_seconds, seed, compare,
                     head_steps, solver, sweep, codec_model, target)
        return
    index, items = load_utterances(shards, kind="codes")
    if index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
        raise CodecError(f"{shards} holds codes of another codec than the LM's ({index.tokenizer}).")
    train, held_out = split_held_out(items, valid_utterances)
    if test is not None:
        train = [c for _, c in items]
    if test is not None:
        test_index, test_items = load_utterances(test, kind="codes")
        if test_index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
            raise CodecError(f"{test} holds codes of another codec than the LM's ({test_index.tokenizer}).")
        held_out = [c for _, c in test_items]
    n_q, sizes = lm.config.n_q, lm.config.codebook_sizes
    train, held_out = [c[:n_q] for c in train], [c[:n_q] for c in held_out]
    bigram = NgramModel(train, sizes, 2)
    bits = {"token LM": lm_bits(lm, held_out), "bigram": bigram.bits(held_out),
            "unigram": NgramModel(train, sizes, 1).bits(held_out)}
    accuracies = []
    if pairs:
        codec = load_codec_for(lm, codec_model, target)
        for source in pairs:  # several sources: each kind labelled with its source's name
            found = judge_pairs(lm, codec, read_pairs(source), reference=bigram)
            accuracies += [replace(a, kind=f"{a.kind} ({source.stem})") if len(pairs) > 1 else a for a in found]
    continuation = None
    if prompts is not None:
        from slm.continuation import choose_prompts, score_continuations, token_sampling
        from slm.generate import continue_utterances

        codec = load_codec_for(lm, codec_model, target)
        chosen, vocabulary = choose_prompts(prompts, num_prompts, prompt_seconds, lm.max_frames / lm.config.frame_rate)
        results = continue_utterances(lm, codec, chosen, prompt_seconds, token_sampling(), seed)
        continuation = score_continuations(results, vocabulary)
    table = write_report(out, bits, lm.config.frame_rate, accuracies, continuation, force=True)
    stdout.print(table, markup=False)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png", markup=False)


def _eval_latent(lm, shards: Path, out: Path, test: Optional[Path], valid_utterances: int, prompts: Optional[Path],
                 num_prompts: int, prompt_seconds: float, seed: int, compare: Optional[str], head_steps: int,
                 solver: str, sweep: bool, codec_model: Optional[str], target) -> None:
    from slm.continuation import choose_prompts, token_sampling
    from slm.generate import load_codec_for, load_lm
    from slm.latent_eval import latents_function, sweep as sweep_settings, system_rows, timed_continuations, write_latent_report
    from slm.latent_model import SamplingOptions
    from slm.latent_train import held_out_flow_loss
    from slm.model import TokenLM
    from slm.shards import load_utterances
    from slm.train import split_held_out

    index, items = load_utterances(test or shards)
    if index.kind != "latents" or index.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
        raise CodecError(f"{test or shards} does not hold latents of the LM's codec ({lm.config.tokenizer}); "
                         "make them with `codec tokenize --continuous`.")
    held_out = [x for _, x in items] if test is not None else split_held_out(items, valid_utterances)[1]
    loss = held_out_flow_loss(lm, held_out)
    systems, sweep_rows = [], []
    if prompts is not None:
        try:
            options = SamplingOptions(head_steps, solver)
        except ValueError as e:
            raise CodecError(f"Invalid sampling options: {e}.") from None
        codec = load_codec_for(lm, codec_model, target)
        other = load_lm(compare, target) if compare else None
        if other is not None and not isinstance(other, TokenLM):
            raise CodecError(f"--compare takes a token LM; {compare} is another latent LM.")
        if other is not None and other.config.tokenizer_fingerprint != lm.config.tokenizer_fingerprint:
            raise CodecError(f"--compare {compare} models another codec's codes ({other.config.tokenizer}); "
                             "compare LMs of the same codec.")
        longest = min(m.max_frames / m.config.frame_rate for m in (lm, other) if m is not None)
        chosen, vocabulary = choose_prompts(prompts, num_prompts, prompt_seconds, longest)
        latents_of = latents_function(codec)
        results, speed = timed_continuations(lm, codec, chosen, prompt_seconds, options, seed)
        rows = system_rows("latent LM (flow head)", results, speed, latents_of, lm.config.frame_rate, vocabulary, True)
        systems += rows[:1]
        if other is not None:
            token_results, token_speed = timed_continuations(other, codec, chosen, prompt_seconds, token_sampling(), seed)
            token_rows = system_rows("token LM", token_results, token_speed, latents_of, lm.config.frame_rate,
                                        vocabulary, False)
            systems += token_rows
        systems += rows[1:]
        if sweep:
            sweep_rows = sweep_settings(lm, codec, chosen, prompt_seconds, options, latents_of, seed)
    table = write_latent_report(out, loss, systems, sweep_rows, force=True)
    stdout.print(table, markup=False)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png", markup=False)
