"""Long inputs: files coded block by block from disk, in bounded memory, with the codes of
in-memory coding; decoded audio written block by block. Memory is measured in child processes
(peak RSS, reset after imports), their address space capped so a regression fails quickly
instead of taking the machine's memory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import AudioCodec
from codec.audio.compress import decode_audio, decode_stream, encode_audio
from codec.audio.io import open_audio, read_audio, resample, write_blocks
from codec.audio.presets import tiny
from codec.audio.segments import model_grid

from .segment_reference import decode_segments, encode_segments

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "benchmarks" / "long_input_memory.py"

CHILD_PRELUDE = """
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {benchmarks!r})
from long_input_memory import _status, limit_memory, reset_peak

def start(limit):
    '''Cap the address space at what is mapped now + limit, reset the peak RSS; the RSS now.'''
    limit_memory(limit)
    return reset_peak()

def peak_growth(base):
    return _status("VmHWM") - base
"""


def run_child(code: str, *args: str, timeout: float = 300) -> dict:
    """Run ``code`` (after CHILD_PRELUDE: start, peak_growth) in a fresh interpreter with one
    torch thread; returns the JSON object it prints last."""
    script = CHILD_PRELUDE.format(benchmarks=str(BENCHMARK.parent)) + textwrap.dedent(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _model(kind: str, sample_rate: int = 16000) -> AudioCodec:
    """The tiny preset (random weights), causal or non-causal on a 1 s grid with RMS
    normalisation; codebooks k-means-initialised on a chirp so that codes vary."""
    torch.manual_seed(0)
    config = tiny(sample_rate)
    if kind == "segmented":
        config = replace(config, seanet=replace(config.seanet, causal=False, pad_mode="reflect"),
                         segment_seconds=1.0, normalize=True)
    model = AudioCodec(config)
    t = torch.arange(sample_rate) / sample_rate
    with torch.no_grad():
        chirp = 0.3 * torch.sin(2 * math.pi * (100 + 2000 * t) * t)[None, None]
        model.train()(chirp + 0.05 * torch.randn(1, 1, sample_rate))
    return model.eval()


def _long_wav(path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1) -> None:
    """Noise and tones, written 10 s at a time."""
    rng = np.random.default_rng(0)
    frames, block = int(seconds * sample_rate), 10 * sample_rate
    with sf.SoundFile(path, "w", sample_rate, channels, "PCM_16") as f:
        for start in range(0, frames, block):
            t = np.arange(start, min(start + block, frames)) / sample_rate
            cols = [0.3 * np.sin(2 * np.pi * (220 * (c + 1) + 30 * np.sin(0.05 * t)) * t) for c in range(channels)]
            f.write((np.stack(cols, 1) + 0.05 * rng.standard_normal((t.size, channels))).astype(np.float32))


@torch.inference_mode()
def _reference_codes(model: AudioCodec, x: torch.Tensor, n_q: int, batch_size: int):
    """The whole-tensor coding of x [S, C, T] (what encode_audio did before it streamed)."""
    if model.config.seanet.causal:
        chunk = 10 * model.sample_rate
        with model.streaming(x.shape[0]):
            parts = [model.encode_step(x[..., i : i + chunk], n_q) for i in range(0, x.shape[-1], chunk)]
            return torch.cat(parts + [model.encode_flush(n_q)], dim=-1), None, None
    grid = model_grid(model, x.shape[-1], 10.0)
    codes, scales = encode_segments(model, x, n_q, grid, model.config.normalize, batch_size)
    return codes, grid, scales


@pytest.mark.parametrize("kind, batch_size", [("causal", 1), ("segmented", 1), ("segmented", 3)])
def test_a_file_streamed_from_disk_gets_the_codes_of_in_memory_coding(tmp_path: Path, kind: str,
                                                                     batch_size: int) -> None:
    """Two minutes coded from disk block by block = from memory = the whole-tensor reference;
    decoded block by block into a file = decoded in memory = the reference decoder."""
    model, wav = _model(kind), tmp_path / "long.wav"
    _long_wav(wav, 120.0)
    with open_audio(wav) as reader:
        streamed = encode_audio(model, reader, 3, batch_size=batch_size)
    audio = read_audio(wav)
    in_memory = encode_audio(model, audio, 3, batch_size=batch_size)
    codes, grid, scales = _reference_codes(model, audio.samples[:, None], 3, batch_size)
    assert torch.equal(streamed.codes, in_memory.codes) and torch.equal(streamed.codes, codes)
    assert len(codes.unique()) > 20 and streamed.num_samples == in_memory.num_samples == audio.num_samples
    assert streamed.grid == in_memory.grid == grid
    if scales is not None:
        assert torch.equal(streamed.scales, in_memory.scales) and torch.equal(streamed.scales, scales.float())

    out = tmp_path / "decoded.wav"
    assert write_blocks(out, decode_stream(model, streamed), 16000) == audio.num_samples
    decoded = decode_audio(model, in_memory).samples
    with torch.inference_mode():
        if grid is not None:
            reference = decode_segments(model, codes, grid, scales)[:, 0]
        else:
            with model.streaming(1):  # decode_stream's chunks: 10 s of frames
                steps = [model.decode_step(codes[..., i : i + 10000]) for i in range(0, codes.shape[-1], 10000)]
            reference = torch.cat(steps, dim=-1)[:, 0]
    assert torch.equal(decoded, reference[:, : audio.num_samples])
    written = read_audio(out).samples
    assert torch.allclose(written, decoded.clamp(-1, 1), atol=1 / 2**15 + 1e-7)


@pytest.mark.parametrize("sample_rate", [44100, 44101])
@pytest.mark.parametrize("kind", ["causal", "segmented"])
def test_resampled_stereo_streams_like_in_memory(tmp_path: Path, sample_rate: int, kind: str) -> None:
    """Stereo at another rate (sinc: 44.1 kHz; soxr: 44,101 Hz) -> a mono 16 kHz model: two
    streams, the same codes from disk and from memory, decoded back at the original rate."""
    model, wav = _model(kind), tmp_path / "stereo.wav"
    _long_wav(wav, 12.5, sample_rate, 2)
    audio = read_audio(wav)
    for downmix in (False, True):
        with open_audio(wav) as reader:
            streamed = encode_audio(model, reader, 2, downmix=downmix, chunk_seconds=2.0)
        in_memory = encode_audio(model, audio, 2, downmix=downmix, chunk_seconds=2.0)
        assert torch.equal(streamed.codes, in_memory.codes) and streamed.streams == (1 if downmix else 2)
        assert streamed.num_samples == audio.num_samples and streamed.sample_rate == sample_rate
    # the model input is the whole-file resampling, to float rounding: codes agree but for near ties
    reference = _reference_codes(model, resample(audio.samples, sample_rate, 16000)[:, None], 2, 1)[0]
    with open_audio(wav) as reader:
        stereo = encode_audio(model, reader, 2)
    assert stereo.codes.shape == reference.shape and (stereo.codes == reference).float().mean() > 0.99
    blocks = list(decode_stream(model, stereo))
    assert all(b.shape[0] == 2 for b in blocks) and sum(b.shape[-1] for b in blocks) == audio.num_samples
    torch.testing.assert_close(torch.cat(blocks, -1), decode_audio(model, stereo).samples, rtol=0, atol=0)


@pytest.mark.parametrize("ext, subtype", [("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_lossy_files_whose_length_is_an_estimate_stream_too(tmp_path: Path, ext: str, subtype: str) -> None:
    """Ogg/MP3 headers may not give the exact length: the codes are joined as they come instead of
    written into a tensor of the announced size, with the same result."""
    model, path = _model("segmented"), tmp_path / f"a.{ext}"
    t = np.arange(5 * 48000) / 48000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)),
             48000, format="OGG" if ext == "ogg" else "MP3", subtype=subtype)
    with open_audio(path) as reader:
        assert reader.exact_frames is None
        streamed = encode_audio(model, reader, 2)
    in_memory = encode_audio(model, read_audio(path), 2)
    assert torch.equal(streamed.codes, in_memory.codes) and torch.equal(streamed.scales, in_memory.scales)
    assert streamed.grid == in_memory.grid and streamed.num_samples == in_memory.num_samples


_COPRIME_DECODE_CHILD = """
import math
from codec.audio.bitstream import CdcHeader, decode_cdc, encode_cdc
from codec.audio.compress import decode_audio, encode_audio
from codec.audio.io import Audio
from codec.audio.presets import tiny
from codec.audio import AudioCodec
torch.manual_seed(0)
model = AudioCodec(tiny()).eval()
t = torch.arange(44101) / 44101
audio = Audio((0.5 * torch.sin(2 * math.pi * 440 * t))[None], 44101)  # 1 s at 44,101 Hz
base = start(1 << 30)
encoded = encode_audio(model, audio, 2)
header, codes = decode_cdc(encode_cdc(CdcHeader.for_encoded(encoded, "tiny", "0" * 16), encoded.codes))
assert header.original_sample_rate == 44101
decoded = decode_audio(model, header.encoded(codes))
print(json.dumps(dict(growth=peak_growth(base), shape=list(decoded.samples.shape), rate=decoded.sample_rate)))
"""


def test_coding_at_a_coprime_rate_in_bounded_memory() -> None:
    """A 1 s file at 44,101 Hz, and its .cdc decoded back to that rate: torchaudio's kernels for
    44,101 <-> 16,000 Hz would take 2.8 GB each."""
    out = run_child(_COPRIME_DECODE_CHILD)
    assert out["shape"] == [1, 44101] and out["rate"] == 44101
    assert out["growth"] < 100 << 20, out


@pytest.mark.slow
def test_six_minutes_stream_in_bounded_memory(tmp_path: Path) -> None:
    """benchmarks/long_input_memory.py on 6 minutes (22 MiB of float32 audio), 1 s chunks: streamed
    coding gives the codes of in-memory coding and adds to the peak RSS only the codes (kept by
    design) and the work on one chunk or segment, which does not grow with the length;
    in-memory coding adds the whole audio on top of that."""
    results = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(BENCHMARK), "--minutes", "6", "--chunk-seconds", "1", "--limit-gib", "1",
                    "--json", str(results), "--dir", str(tmp_path)], cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=300)
    report = json.loads(results.read_text())
    runs = {(r["model"], r["mode"]): r for r in report["runs"]}
    assert all("error" not in r for r in runs.values()), runs
    audio_mib = report["audio_mib"]
    for kind in ("causal", "segmented"):
        streamed, in_memory = runs[kind, "streamed"], runs[kind, "in-memory"]
        assert streamed["codes_sha256"] == in_memory["codes_sha256"]
        assert streamed["growth_mib"] - streamed["codes_mib"] < audio_mib / 2, streamed  # 1 s of work: a few MiB
        assert in_memory["growth_mib"] - streamed["growth_mib"] > 0.75 * audio_mib, (streamed, in_memory)
