"""The benchmark suite: one run, one table (`make bench`).

Rows, on the CPU at each thread count (and on CUDA when present):
- coding: encode, decode and encode + decode speed in x real time (audio seconds per second)
  of the default model and of the EnCodec 24 kHz (6 kbps) and DAC 16 kHz architectures, next
  to the reference packages (`encodec`, `descript-audio-codec`) with the same random weights
  (fixed seed), as ratios from this run; the outputs are checked equal first. "prepared" is
  ``prepare_for_inference`` (weight norm folded); bfloat16 / int8 rows give their PESQ-WB
  change on the sample speech against float32. Like the CLI, the suite tunes glibc's malloc
  (``codec.devices.reuse_freed_memory``); one more row codes with the default model in a child
  process that leaves malloc as it is;
- streaming: ms per 20 ms frame (encode_step + decode_step), mean and 95th percentile;
- batch tokenization: hours of audio per hour through ``model.encode`` on a batch of clips;
- training: steps/s of the default recipe's model, batch 16 x 0.5 s, with the recipe's losses.
Peak memory is the growth of resident memory during one measurement (CUDA: allocated memory);
for coding, during the warm-up call. Times are the best of ``--repeats`` after a warm-up, under
``torch.inference_mode``.

    python -m benchmarks.suite [--quick] [--out build/bench] [--compile]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from codec.audio import AudioCodec
from codec.audio.inference import Precision, prepare_for_inference
from codec.audio.io import read_audio, resample
from codec.audio.registry import DEFAULT_MODEL, load_tokenizer
from codec.devices import GLIBC_MALLOC_ENV, reuse_freed_memory
from codec.eval.metrics import pesq_wb

REPO = Path(__file__).resolve().parents[1]
PREVIOUS_DEFAULT = "devspeech_16khz"  # the first bundled default model (SEANet decoder)
SAMPLES = sorted((REPO / "samples").glob("*.flac"))


@dataclass(frozen=True)
class SuiteConfig:
    seconds: float = 10.0  # clip coded by the default model
    encodec_seconds: float = 3.0  # clips of the architectures with a reference package (ours and the
    dac_seconds: float = 1.5  # reference code the same clip); DAC 16 kHz codes about 1x real time here
    repeats: int = 3
    threads: tuple[int, ...] = (1, 2)
    stream_seconds: float = 4.0
    batch_clips: int = 16
    batch_seconds: float = 10.0
    train_steps: int = 5
    train_batch: int = 16
    train_crop_seconds: float = 0.5
    recipe: Path = REPO / "recipes" / "devspeech" / "codec16k_v7.yaml"  # the default model's last stage
    data_dir: Path | None = REPO.parent / "shared" / "data" / "devspeech"
    train_overrides: tuple[str, ...] = ("init_from=", "data.extra_train_dirs=[]")  # random weights, dev speech
    #   only: the step costs the same
    tiny_references: bool = False  # scaled-down EnCodec / DAC (same structure) for a quick run
    compile: bool = False
    malloc_tuned: bool = False  # reuse_freed_memory() took effect: add a row without it (a child process)


QUICK = SuiteConfig(seconds=1.0, encodec_seconds=0.5, dac_seconds=0.5, repeats=1, threads=(1,), stream_seconds=0.2,
                    batch_clips=2, batch_seconds=0.5, train_steps=1, train_batch=2, train_crop_seconds=0.1, data_dir=REPO / "samples",
                    train_overrides=("init_from=", "data.extra_train_dirs=[]", "data.corpus=folder", "data.valid_clips=1",
                                     "model.seanet.n_filters=2",
                                     "model.seanet.lstm_layers=0", "model.quantizer.n_q=2"),
                    tiny_references=True)


@dataclass
class Row:
    benchmark: str
    model: str
    variant: str
    device: str
    threads: int | None
    encode: str = ""
    decode: str = ""
    both: str = ""
    vs_reference: str = ""
    pesq_wb: str = ""
    peak_mb: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # the numbers behind the text, for the JSON


# --- measuring -------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """``{"mb": ...}`` after the block: how far memory rose above its level at the start."""
    result: dict[str, float] = {}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        result["mb"] = (torch.cuda.max_memory_allocated(device) - start) / 2**20
        return
    try:  # Linux: give freed heap back to the OS, then reset the high-water mark to the current size
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        start_kb = _status_kb("VmRSS")
        yield result
        result["mb"] = (_status_kb("VmHWM") - start_kb) / 1024
    except OSError:  # elsewhere: the process's peak so far
        yield result
        result["mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seconds_of(fn: Callable[[], Any], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def best_seconds(fn: Callable[[], Any], repeats: int, device: torch.device,
                 warmup: Callable[[], Any] | None = None) -> float:
    """Best wall time of ``repeats`` calls of ``fn``, after one warm-up call (of ``warmup``, if given)."""
    (warmup or fn)()
    return min(seconds_of(fn, device) for _ in range(repeats))


# --- the systems compared ----------------------------------------------------------------------
@dataclass(frozen=True)
class Coder:
    """One implementation of one architecture: encode [B, C, T] -> codes, decode codes -> audio."""

    variant: str
    encode: Callable[[torch.Tensor], Any]
    decode: Callable[[Any], torch.Tensor]
    codes: Callable[[Any], torch.Tensor]  # what encode returned -> codes [B, Q, F]


def ours(model: AudioCodec, variant: str, n_q: int | None = None) -> Coder:
    return Coder(variant, lambda x: model.encode(x, n_q), model.decode, lambda codes: codes)


def _encodec_reference(tiny: bool) -> tuple[Any, int]:
    """EnCodec 24 kHz at 6 kbps with random weights and codebooks (seed 0), and its n_q."""
    import encodec
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # encodec uses torch's old weight_norm
        if tiny:
            sizes = {"n_filters": 2, "dimension": 16}
            model = encodec.EncodecModel(SEANetEncoder(causal=True, **sizes), SEANetDecoder(causal=True, **sizes),
                                         ResidualVectorQuantizer(16, n_q=8, bins=1024), [1.5, 3.0, 6.0, 12.0, 24.0],
                                         24000, 1)
        else:
            model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    with torch.no_grad():  # the untrained codebooks are zeros: give them codes worth telling apart
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.normal_(0, 0.1)
            layer._codebook.inited.fill_(1.0)
    model.set_target_bandwidth(6.0)
    return model.eval(), model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, 6.0)


def _dac_reference(tiny: bool) -> Any:
    """DAC at its 16 kHz configuration with random weights (seed 0)."""
    import dac

    torch.manual_seed(0)
    widths = {"encoder_dim": 4, "decoder_dim": 16, "n_codebooks": 2} if tiny else {}
    kwargs = {"encoder_dim": 64, "decoder_dim": 1536, "n_codebooks": 12, **widths}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dac.DAC(encoder_rates=[2, 4, 5, 8], decoder_rates=[8, 5, 4, 2], codebook_size=1024, codebook_dim=8,
                        sample_rate=16000, **kwargs)
    return model.eval()


@dataclass(frozen=True)
class Architecture:
    name: str
    sample_rate: int
    seconds: float  # of the clip coded
    coders: list[Coder]  # ours first, the reference last (if any)
    checks: list[str]  # what the equality check found


def _equality(name: str, a: Coder, b: Coder, x: torch.Tensor) -> str:
    with torch.inference_mode():
        ca, cb = a.encode(x), b.encode(x)
        equal = torch.equal(a.codes(ca), b.codes(cb))
        ya, yb = a.decode(ca), b.decode(cb)
        n = min(ya.shape[-1], yb.shape[-1])  # DAC 16 kHz decodes 8 samples short; ours are zeros there
        diff = (ya[..., :n] - yb[..., :n]).abs().max().item()
    return f"{name}: {a.variant} vs {b.variant}: codes equal {equal}, max |audio difference| {diff:.2e}"


def architectures(config: SuiteConfig, device: torch.device) -> list[Architecture]:
    from codec.audio.convert import convert_dac, convert_encodec

    def default() -> AudioCodec:
        return load_tokenizer(DEFAULT_MODEL, device)  # as the CLI loads it

    found = []
    base = default()
    coders = [ours(base, "ours"), ours(prepare_for_inference(default()), "ours, prepared")]
    if config.compile:
        coders.append(ours(prepare_for_inference(default(), compile=True), "ours, prepared, compiled"))
    x = _speech(base.sample_rate, config.seconds, device)
    found.append(Architecture(f"default ({DEFAULT_MODEL})", base.sample_rate, config.seconds, coders,
                              [_equality("default", coders[0], coders[1], x)]))
    if DEFAULT_MODEL != PREVIOUS_DEFAULT:  # the speed the new default must keep
        previous = prepare_for_inference(load_tokenizer(PREVIOUS_DEFAULT, device))
        found.append(Architecture(f"previous default ({PREVIOUS_DEFAULT})", previous.sample_rate, config.seconds,
                                  [ours(previous, "ours, prepared")], []))

    encodec_ref, n_q = _encodec_reference(config.tiny_references)
    encodec_ref.to(device)
    reference = Coder("reference (encodec)", encodec_ref.encode, encodec_ref.decode, lambda frames: frames[0][0])
    coders = [ours(convert_encodec(encodec_ref).to(device), "ours", n_q),
              ours(prepare_for_inference(convert_encodec(encodec_ref).to(device)), "ours, prepared", n_q), reference]
    x = _speech(24000, config.encodec_seconds, device)
    found.append(Architecture("EnCodec 24 kHz, 6 kbps", 24000, config.encodec_seconds, coders,
                              [_equality("EnCodec", c, reference, x) for c in coders[:2]]))

    dac_ref = _dac_reference(config.tiny_references).to(device)
    reference = Coder("reference (dac)", lambda x: dac_ref.encode(x)[1],
                      lambda codes: dac_ref.decode(dac_ref.quantizer.from_codes(codes)[0]), lambda codes: codes)
    coders = [ours(convert_dac(dac_ref).to(device), "ours"),
              ours(prepare_for_inference(convert_dac(dac_ref).to(device)), "ours, prepared"), reference]
    x = _speech(16000, config.dac_seconds, device)
    found.append(Architecture("DAC 16 kHz", 16000, config.dac_seconds, coders,
                              [_equality("DAC", c, reference, x) for c in coders[:2]]))
    return found


def _clips(sample_rate: int) -> list[torch.Tensor]:
    """The sample speech clips, mono at ``sample_rate``: each [T]."""
    return [resample(audio.samples.mean(0), audio.sample_rate, sample_rate) for audio in map(read_audio, SAMPLES)]


def _speech(sample_rate: int, seconds: float, device: torch.device) -> torch.Tensor:
    """The sample speech joined and repeated to ``seconds``: [1, 1, T]."""
    joined = torch.cat(_clips(sample_rate))
    n = int(seconds * sample_rate)
    return joined.repeat(n // len(joined) + 1)[:n][None, None].to(device)


# --- the benchmarks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CodingTimes:
    encode: float  # best seconds
    decode: float
    peak_mb: float

    def speeds(self, seconds: float) -> dict[str, float]:
        """x real time of encode, decode and both, for a clip of ``seconds``."""
        return {"encode_x": seconds / self.encode, "decode_x": seconds / self.decode,
                "both_x": seconds / (self.encode + self.decode)}


def time_coders(coders: list[Coder], x: torch.Tensor, repeats: int, device: torch.device) -> list[CodingTimes]:
    """Best encode and decode times of each coder on ``x`` [B, C, T] after a warm-up. The coders take
    turns in every repeat, so that a change of load on a busy machine hits them all alike."""
    times = [[math.inf, math.inf, 0.0] for _ in coders]
    with torch.inference_mode():
        encoded = []
        for best, coder in zip(times, coders):  # the warm-up call measures the peak memory
            with peak_memory(device) as memory:
                encoded.append(coder.encode(x))
                coder.decode(encoded[-1])
            best[2] = memory["mb"]
        for _ in range(repeats):  # timed apart from peak_memory, which hands freed memory back first
            for best, coder, codes in zip(times, coders, encoded):
                best[0] = min(best[0], seconds_of(lambda: coder.encode(x), device))
                best[1] = min(best[1], seconds_of(lambda: coder.decode(codes), device))
    return [CodingTimes(*best) for best in times]


def _coding_row(benchmark: str, model: str, variant: str, device: torch.device, threads: int | None,
                times: CodingTimes, seconds: float) -> Row:
    values = times.speeds(seconds)
    return Row(benchmark, model, variant, device.type, threads, f"{values['encode_x']:.1f}x",
               f"{values['decode_x']:.1f}x", f"{values['both_x']:.1f}x", peak_mb=times.peak_mb, values=values)


def coding_rows(arch: Architecture, config: SuiteConfig, device: torch.device, threads: int | None) -> list[Row]:
    times = time_coders(arch.coders, _speech(arch.sample_rate, arch.seconds, device), config.repeats, device)
    rows = [_coding_row("coding", arch.name, c.variant, device, threads, t, arch.seconds)
            for c, t in zip(arch.coders, times)]
    if arch.coders[-1].variant.startswith("reference"):
        reference = rows[-1].values
        for row in rows[:-1]:
            ratios = {k: row.values[k] / reference[k] for k in ("encode_x", "decode_x", "both_x")}
            row.values.update({f"{k}_vs_reference": v for k, v in ratios.items()})
            row.vs_reference = " / ".join(f"{v:.2f}" for v in ratios.values())
    return rows


def default_coding_times(seconds: float, repeats: int, threads: int) -> dict[str, float]:
    """The prepared default model's ``CodingTimes`` on the CPU, as a dict (for a child process)."""
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    model = prepare_for_inference(load_tokenizer(DEFAULT_MODEL))
    return asdict(time_coders([ours(model, "prepared")], _speech(model.sample_rate, seconds, cpu), repeats, cpu)[0])


_PLAIN_MALLOC_CHILD = """import json, sys
from benchmarks.suite import default_coding_times
print(json.dumps(default_coding_times(float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
"""


def plain_malloc_row(config: SuiteConfig, threads: int) -> Row:
    """The prepared default model in a child process that leaves glibc's malloc as it is (what torch
    alone gets), to set against the tuned row of this process (``reuse_freed_memory``)."""
    env = {name: value for name, value in os.environ.items() if name not in GLIBC_MALLOC_ENV}
    out = subprocess.run([sys.executable, "-c", _PLAIN_MALLOC_CHILD, str(config.seconds), str(config.repeats),
                          str(threads)], cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout
    times = CodingTimes(**json.loads(out.strip().splitlines()[-1]))
    return _coding_row("coding", f"default ({DEFAULT_MODEL})", "ours, prepared, glibc's default malloc",
                       torch.device("cpu"), threads, times, config.seconds)


def precision_rows(config: SuiteConfig, device: torch.device, threads: int | None) -> list[Row]:
    """The default model in reduced precision: speed, and PESQ-WB on the sample speech vs float32."""
    precisions: list[Precision] = ["float32", "bfloat16"] + (["int8"] if device.type == "cpu" else [])
    models = [prepare_for_inference(load_tokenizer(DEFAULT_MODEL, device), precision=p) for p in precisions]
    clips = _clips(16000)
    quality = []
    with torch.inference_mode():
        for model in models:
            decoded = [model.decode(model.encode(c[None, None].to(device)), c.shape[-1])[0, 0].float().cpu()
                       for c in clips]
            quality.append(statistics.mean(pesq_wb(c.numpy(), d.numpy(), 16000) for c, d in zip(clips, decoded)))
    x = _speech(16000, config.seconds, device)
    times = time_coders([ours(m, p) for m, p in zip(models, precisions)], x, config.repeats, device)
    rows = []
    for precision, pesq, timing in zip(precisions, quality, times):
        row = _coding_row("precision", "default", f"prepared, {precision}", device, threads, timing, config.seconds)
        row.values.update({"pesq_wb": pesq, "pesq_wb_change": pesq - quality[0]})
        row.pesq_wb = f"{pesq:.2f} ({pesq - quality[0]:+.2f})"
        rows.append(row)
    return rows


def streaming_row(model: AudioCodec, config: SuiteConfig, device: torch.device, threads: int | None) -> Row:
    """ms per frame of encode_step + decode_step on live input, one frame (hop samples) at a time."""
    x = _speech(model.sample_rate, config.stream_seconds, device)
    frames = x.split(model.hop_length, dim=-1)
    times = []
    with torch.inference_mode(), peak_memory(device) as memory, model.streaming(1):
        for i, frame in enumerate(frames):
            start = time.perf_counter()
            model.decode_step(model.encode_step(frame))
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= min(5, len(frames) // 2):  # after warm-up frames
                times.append((time.perf_counter() - start) * 1000)
    mean, p95 = statistics.mean(times), sorted(times)[int(0.95 * (len(times) - 1))]
    frame_ms = 1000 * model.hop_length / model.sample_rate
    return Row("streaming", "default", "prepared", device.type, threads, both=f"{mean:.2f} ms (p95 {p95:.2f})",
               peak_mb=memory["mb"], values={"frame_ms": frame_ms, "mean_ms": mean, "p95_ms": p95})


def batch_row(model: AudioCodec, config: SuiteConfig, device: torch.device, threads: int | None) -> Row:
    x = _speech(model.sample_rate, config.batch_seconds, device).expand(config.batch_clips, -1, -1).contiguous()
    with torch.inference_mode(), peak_memory(device) as memory:
        seconds = best_seconds(lambda: model.encode(x), config.repeats, device, warmup=lambda: model.encode(x[:1]))
    hours_per_hour = config.batch_clips * config.batch_seconds / seconds
    return Row("batch tokenization", "default", f"prepared, {config.batch_clips} x {config.batch_seconds:g} s",
               device.type, threads, encode=f"{hours_per_hour:.0f} h/h", peak_mb=memory["mb"],
               values={"hours_per_hour": hours_per_hour})


def training_row(config: SuiteConfig, device: torch.device, threads: int | None) -> Row | None:
    from benchmarks.train_speed import time_steps
    from codec.train import Trainer, load_train_config, read_recipe

    if config.data_dir is None or not config.data_dir.exists():
        return None
    overrides = [f"batch_size={config.train_batch}", f"data.crop_seconds={config.train_crop_seconds}",
                 f"device={device.type}", "data.num_workers=0", *config.train_overrides]
    train_config = load_train_config(read_recipe(config.recipe), overrides, str(config.data_dir))
    with tempfile.TemporaryDirectory() as run_dir, peak_memory(device) as memory:
        steps_per_s = time_steps(Trainer(train_config, run_dir), config.train_steps, warmup=1)
    return Row("training", "default recipe", f"batch {config.train_batch} x {config.train_crop_seconds:g} s",
               device.type, threads, both=f"{steps_per_s:.2f} steps/s", peak_mb=memory["mb"],
               values={"steps_per_s": steps_per_s})


# --- the run -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    described = {"cpu": cpu.group(1) if cpu else platform.processor(), "cores": len(os.sched_getaffinity(0)),
                 "torch": torch.__version__, "python": platform.python_version(),
                 "load_average": os.getloadavg()[0]}
    if torch.cuda.is_available():
        described["cuda"] = torch.cuda.get_device_name()
    return described


def _progress(stage: str) -> None:
    print(f"[bench] {stage}", file=sys.stderr, flush=True)


def run(config: SuiteConfig) -> tuple[dict[str, Any], list[Row], list[str]]:
    rows: list[Row] = []
    checks: list[str] = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        archs = architectures(config, device)
        checks += [f"{device.type}: {c}" for a in archs for c in a.checks]
        model = prepare_for_inference(load_tokenizer(DEFAULT_MODEL, device))
        for threads in (config.threads if device.type == "cpu" else (None,)):
            if threads is not None:
                torch.set_num_threads(threads)
            where = f"{device.type}" + (f", {threads} thread(s)" if threads else "")
            for arch in archs:
                _progress(f"coding: {arch.name}, {where}")
                rows += coding_rows(arch, config, device, threads)
                if arch is archs[0] and config.malloc_tuned and threads is not None:
                    rows.append(plain_malloc_row(config, threads))
            _progress(f"precision, streaming, batch tokenization, training: {where}")
            rows += precision_rows(config, device, threads)
            rows.append(streaming_row(model, config, device, threads))
            rows.append(batch_row(model, config, device, threads))
            trained = training_row(config, device, threads)
            rows += [trained] if trained else []
    return machine(), rows, checks


COLUMNS = [("benchmark", "benchmark"), ("model", "model"), ("variant", "variant"), ("device", "device"),
           ("threads", "threads"), ("encode", "encode"), ("decode", "decode"), ("both", "encode + decode"),
           ("vs_reference", "vs reference (enc / dec / both)"), ("pesq_wb", "PESQ-WB (change)"),
           ("peak_mb", "peak MB")]


def markdown(described: dict[str, Any], rows: list[Row], checks: list[str], config: SuiteConfig) -> str:
    def cell(row: Row, key: str) -> str:
        value = getattr(row, key)
        if value is None:
            return "-"
        return f"{value:.0f}" if key == "peak_mb" else str(value)

    lines = [f"Machine: {described['cpu']}, {described['cores']} cores"
             + (f", {described['cuda']}" if "cuda" in described else "")
             + f"; torch {described['torch']}; load average {described['load_average']:.2f} at the start"
             + ("; malloc tuned (codec.devices.reuse_freed_memory)." if config.malloc_tuned else "."),
             f"Clips: {config.seconds:g} s (default model), {config.encodec_seconds:g} s (EnCodec), "
             f"{config.dac_seconds:g} s (DAC); best of "
             f"{config.repeats}; x = audio seconds per second; ratios are ours / reference from this run.", ""]
    lines += ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, key) for key, _ in COLUMNS) + " |" for row in rows]
    lines += ["", "Equal outputs:", *[f"- {c}" for c in checks]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test in seconds")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow to compile)")
    parser.add_argument("--threads", type=int, nargs="+", help="CPU thread counts (default: 1 2)")
    args = parser.parse_args()
    config = replace(QUICK if args.quick else SuiteConfig(), compile=args.compile)
    if args.threads:
        config = replace(config, threads=tuple(args.threads))
    config = replace(config, malloc_tuned=reuse_freed_memory())  # as the CLI does
    start = time.perf_counter()
    described, rows, checks = run(config)
    described["suite_seconds"] = time.perf_counter() - start
    table = markdown(described, rows, checks, config)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    document = {"machine": described, "config": {k: str(v) for k, v in asdict(config).items()},
                "checks": checks, "rows": [asdict(row) for row in rows]}
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"{described['suite_seconds']:.0f} s; written to {args.out}/results.md and results.json")


if __name__ == "__main__":
    main()
