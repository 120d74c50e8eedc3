"""Reading, converting and atomically writing audio files (codec/audio/io.py)."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import reader as audio_reader
from codec.audio.io import Audio, open_audio, read_audio, resample, to_channels, write_audio, write_blocks
from codec.audio.resample import Resampler, resampled_length, uses_sinc
from codec.files import atomic_write, check_writable
from codec.errors import CodecError


def _signal(sr: int, channels: int, seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    """[T, C] float32: a different sine per channel plus a little noise, peak < 0.8."""
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    cols = [0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.stack(cols, axis=1).clip(-0.8, 0.8).astype(np.float32)


def _error(path: Path) -> str:
    with pytest.raises(CodecError) as info:
        read_audio(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and msg.endswith(".")
    return msg


@pytest.mark.parametrize(
    "subtype, sr, channels, tol",
    [
        ("PCM_U8", 16000, 1, 2 / 2**8),
        ("PCM_16", 44100, 2, 2 / 2**16),
        ("PCM_24", 48000, 6, 2 / 2**24),
        ("PCM_32", 8000, 1, 1e-7),
        ("FLOAT", 96000, 2, 0.0),
    ],
)
def test_read_wav_subtypes(tmp_path: Path, subtype: str, sr: int, channels: int, tol: float) -> None:
    x = _signal(sr, channels)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, sr, subtype=subtype)
    audio = read_audio(path)
    assert audio.samples.dtype == torch.float32
    assert (audio.sample_rate, audio.channels, audio.num_samples) == (sr, channels, len(x))
    assert audio.duration == pytest.approx(0.25)
    np.testing.assert_allclose(audio.samples.numpy(), x.T, atol=tol + 1e-7)


def test_read_flac_lossless(tmp_path: Path) -> None:
    x = _signal(22050, 2)
    sf.write(tmp_path / "a.flac", x, 22050, subtype="PCM_24")
    audio = read_audio(tmp_path / "a.flac")
    assert (audio.sample_rate, audio.channels) == (22050, 2)
    np.testing.assert_allclose(audio.samples.numpy(), x.T, atol=2 / 2**24)


@pytest.mark.parametrize("fmt, subtype, ext", [("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"),
                                               ("MP3", "MPEG_LAYER_III", "mp3")])
def test_read_lossy(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    sr = 48000
    x = _signal(sr, 2, seconds=1.0)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    audio = read_audio(path)
    assert (audio.sample_rate, audio.channels) == (sr, 2)
    assert abs(audio.num_samples - len(x)) <= 2048
    # lossy: compare energy per channel rather than samples (codec delay, noise shaping)
    rms_in = np.sqrt((x**2).mean(axis=0))
    rms_out = audio.samples.pow(2).mean(dim=1).sqrt().numpy()
    np.testing.assert_allclose(rms_out, rms_in, rtol=0.15)


def test_format_detected_by_content_and_unusual_names(tmp_path: Path) -> None:
    x = _signal(16000, 1)
    for name in ["actually_a_wav.mp3", "name with spaces.wav", "ünïcödé 音声.wav", "no_extension"]:
        sf.write(tmp_path / "tmp.wav", x, 16000, subtype="PCM_16")
        os.replace(tmp_path / "tmp.wav", tmp_path / name)
        audio = read_audio(tmp_path / name)
        assert (audio.sample_rate, audio.channels, audio.num_samples) == (16000, 1, len(x))
        np.testing.assert_allclose(audio.samples[0].numpy(), x[:, 0], atol=1e-4)


def test_bad_inputs(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "missing.wav")
    assert "directory" in _error(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "is empty" in _error(tmp_path / "empty.wav")
    sf.write(tmp_path / "header_only.wav", np.zeros((0, 1), np.float32), 16000)
    assert "contains no audio samples" in _error(tmp_path / "header_only.wav")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    assert "is not a readable audio file" in _error(tmp_path / "random.wav")
    (tmp_path / "text.flac").write_text("this is not audio\n" * 20)
    assert "is not a readable audio file" in _error(tmp_path / "text.flac")
    for bad, name in [(np.nan, "nan.wav"), (np.inf, "inf.wav"), (-np.inf, "ninf.wav")]:
        x = _signal(16000, 1)
        x[100, 0] = bad
        sf.write(tmp_path / name, x, 16000, subtype="FLOAT")
        assert "NaN or infinite" in _error(tmp_path / name)


@pytest.mark.parametrize("ext, fmt, subtype", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"),
                                               ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")])
def test_truncated_files(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    full = tmp_path / f"full.{ext}"
    sf.write(full, _signal(48000, 2, seconds=1.0), 48000, format=fmt, subtype=subtype)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    msg = _error(cut)
    assert "truncated" in msg or "not a readable audio file" in msg


def test_wav_with_odd_chunk_before_data_and_streamed_size(tmp_path: Path) -> None:
    x = (_signal(8000, 1)[:, 0] * 32767).astype("<i2")
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    odd = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\0"  # odd size, padded
    for data_size in (len(x) * 2, 0xFFFFFFFF):
        body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + odd
        body += b"data" + struct.pack("<I", data_size) + x.tobytes()
        path = tmp_path / f"odd_{data_size}.wav"
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        audio = read_audio(path)
        assert audio.num_samples == len(x)
        np.testing.assert_allclose(audio.samples[0].numpy(), x / 32768, atol=1e-6)
        path.write_bytes(path.read_bytes()[:-1000])  # now shorter than declared
        if data_size != 0xFFFFFFFF:
            assert "truncated" in _error(path)


def test_resample_length_and_sine() -> None:
    sr_in, sr_out = 44100, 16000
    t = torch.arange(sr_in) / sr_in
    x = torch.stack([torch.sin(2 * math.pi * 200 * t), 0.5 * torch.sin(2 * math.pi * 300 * t)])
    y = resample(x, sr_in, sr_out)
    assert y.shape == (2, sr_out)
    t2 = torch.arange(sr_out) / sr_out
    ref = torch.stack([torch.sin(2 * math.pi * 200 * t2), 0.5 * torch.sin(2 * math.pi * 300 * t2)])
    inner = slice(200, -200)  # away from the edges
    assert torch.allclose(y[:, inner], ref[:, inner], atol=2e-3)
    assert resample(x, 16000, 16000) is x
    assert resample(x[None], 44100, 88200).shape == (1, 2, 2 * sr_in)


def test_to_channels() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(to_channels(x, 1), torch.tensor([[2.0, 3.0]]))
    assert to_channels(x, 2) is x
    assert torch.equal(to_channels(x[:1], 3), torch.tensor([[1.0, 2.0]] * 3))
    with pytest.raises(CodecError, match="6-channel audio to 2 channels"):
        to_channels(torch.zeros(6, 10), 2)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "opus", "mp3"])
def test_write_round_trip(tmp_path: Path, ext: str) -> None:
    sr = 24000
    x = torch.from_numpy(_signal(sr, 2, seconds=0.5).T.copy())
    x[0, :10] = 3.0  # clipped to 1
    path = tmp_path / f"out.{ext}"
    write_audio(path, x, sr)
    audio = read_audio(path)
    assert (audio.sample_rate, audio.channels) == (sr, 2)
    assert list(tmp_path.iterdir()) == [path]
    if ext in ("wav", "flac"):
        expected = x.clamp(-1, 1)
        assert audio.num_samples == x.shape[1]
        assert torch.allclose(audio.samples, expected, atol=1 / 2**15 + 1e-6)
    else:
        assert abs(audio.num_samples - x.shape[1]) <= 2048


def test_write_resamples_when_format_cannot_store_rate(tmp_path: Path) -> None:
    x = torch.from_numpy(_signal(44100, 1, seconds=0.5).T.copy())
    write_audio(tmp_path / "a.opus", x, 44100)
    assert read_audio(tmp_path / "a.opus").sample_rate == 48000


def test_write_refusals(tmp_path: Path) -> None:
    x = torch.zeros(1, 100)
    target = tmp_path / "a.wav"
    write_audio(target, x, 16000)
    with pytest.raises(CodecError, match="already exists; pass --force to overwrite it"):
        write_audio(target, x + 0.5, 16000)
    write_audio(target, x + 0.5, 16000, force=True)
    assert read_audio(target).samples.mean().item() == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(CodecError, match="unsupported extension"):
        write_audio(tmp_path / "a.xyz", x, 16000)
    with pytest.raises(CodecError, match="does not exist"):
        write_audio(tmp_path / "nope" / "a.wav", x, 16000)
    with pytest.raises(CodecError, match="is a directory"):
        check_writable(tmp_path)


def test_write_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores directory permissions: simulate them
            monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
        with pytest.raises(CodecError, match="is not writable"):
            write_audio(locked / "a.wav", torch.zeros(1, 10), 16000)
    finally:
        monkeypatch.undo()
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_write(self, data) -> None:
        Path(self.name).write_bytes(b"RIFF partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", broken_write)
    with pytest.raises(CodecError, match="disk full"):
        write_audio(tmp_path / "a.wav", torch.zeros(1, 10), 16000)
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "b.wav"
    existing.write_bytes(b"old")
    with pytest.raises(CodecError):
        write_audio(existing, torch.zeros(1, 10), 16000, force=True)
    assert existing.read_bytes() == b"old" and list(tmp_path.iterdir()) == [existing]


def test_atomic_write_context(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with pytest.raises(KeyError):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.exists()
            tmp.write_bytes(b"half")
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and list(tmp_path.iterdir()) == [target]


def test_audio_dataclass() -> None:
    a = Audio(samples=torch.zeros(2, 480), sample_rate=48000)
    assert (a.channels, a.num_samples, a.duration) == (2, 480, 0.01)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.wav"
    sf.write(path, _signal(16000, 1), 16000)
    path.chmod(0o000)
    if not os.access(path, os.R_OK):  # only effective when not running as root
        assert "permission denied" in _error(path)
    path.chmod(0o600)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio_reader, "open", denied, raising=False)  # past check_readable: the header checks
    assert "permission denied" in _error(path)


# --- hardening: streamed WAVs, coprime rates, bounded memory --------------------------------


def _streamed_wav(path: Path, pcm: np.ndarray, riff_size: int | None, trailer: bytes = b"") -> None:
    """A 16-bit mono 8 kHz WAV whose data chunk size is 0, as a recorder writes the header
    before it knows the length; riff_size None: the true size."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0) + pcm.tobytes() + trailer
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body)


def test_wav_with_zero_data_size_is_read_to_its_end(tmp_path: Path) -> None:
    x = (_signal(8000, 1)[:, 0] * 32767).astype("<i2")
    for riff_size in (None, 0):
        path = tmp_path / f"streamed_{riff_size}.wav"
        _streamed_wav(path, x, riff_size)
        audio = read_audio(path)
        assert (audio.sample_rate, audio.num_samples) == (8000, len(x))
        np.testing.assert_allclose(audio.samples[0].numpy(), x / 32768, atol=1e-6)
        with open_audio(path) as reader:
            assert torch.equal(torch.cat(list(reader.blocks(500)), dim=-1), audio.samples)
    # an odd byte at the end (a cut recording) is not a sample; an empty data chunk followed
    # by other chunks holds no samples
    _streamed_wav(tmp_path / "odd.wav", x, None, b"\x01")
    assert read_audio(tmp_path / "odd.wav").num_samples == len(x)
    _streamed_wav(tmp_path / "empty.wav", x[:0], None, b"LIST" + struct.pack("<I", 4) + b"INFO")
    assert "contains no audio samples" in _error(tmp_path / "empty.wav")


def test_reader_gives_the_file_in_blocks(tmp_path: Path) -> None:
    x = _signal(16000, 3, seconds=1.0)
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_24")
    whole = read_audio(tmp_path / "a.flac").samples
    with open_audio(tmp_path / "a.flac") as reader:
        assert (reader.sample_rate, reader.channels, reader.frames) == (16000, 3, 16000)
        blocks = list(reader.blocks(5000))
        assert [b.shape for b in blocks] == [(3, 5000)] * 3 + [(3, 1000)] and reader.num_samples == 16000
        assert all(b.dtype == torch.float32 and b.is_contiguous() for b in blocks)
        assert torch.equal(torch.cat(blocks, dim=-1), whole)
        assert torch.equal(torch.cat(list(reader.blocks(7000)), dim=-1), whole)  # again, from the start
    # a NaN far into the file is found when its block is read; a cut FLAC at the end
    y = _signal(16000, 1, seconds=2.0)
    y[25000, 0] = np.nan
    sf.write(tmp_path / "nan.wav", y, 16000, subtype="FLOAT")
    with open_audio(tmp_path / "nan.wav") as reader:
        blocks = reader.blocks(10000)
        assert next(blocks).shape == (1, 10000) and next(blocks).shape == (1, 10000)
        with pytest.raises(CodecError, match="NaN or infinite"):
            next(blocks)
    sf.write(tmp_path / "long.flac", _signal(16000, 1, seconds=20.0), 16000)
    data = (tmp_path / "long.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with open_audio(tmp_path / "cut.flac") as reader, pytest.raises(CodecError, match="truncated"):
        list(reader.blocks())


def test_write_blocks_as_they_come(tmp_path: Path) -> None:
    x = torch.from_numpy(_signal(16000, 2, seconds=1.0).T.copy())
    write_audio(tmp_path / "whole.wav", x, 16000)
    frames = write_blocks(tmp_path / "blocks.wav", iter(x.split(3000, dim=-1)), 16000)
    assert frames == 16000
    assert (tmp_path / "whole.wav").read_bytes() == (tmp_path / "blocks.wav").read_bytes()
    # Opus cannot store 44.1 kHz: resampled to 48 kHz on the way, block by block
    y = torch.from_numpy(_signal(44100, 1, seconds=1.0).T.copy())
    write_blocks(tmp_path / "a.opus", y.split(10000, dim=-1), 44100)
    back = read_audio(tmp_path / "a.opus")
    assert back.sample_rate == 48000 and abs(back.num_samples - 48000) <= 2048

    def failing():  # the decoder fails half-way: nothing is left behind
        yield x[:, :8000]
        raise CodecError("the model failed")

    with pytest.raises(CodecError, match="the model failed"):
        write_blocks(tmp_path / "c.wav", failing(), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.opus", "blocks.wav", "whole.wav"]


def _sine(sr: int, seconds: float, freq: float, amp: float) -> torch.Tensor:
    t = torch.arange(round(sr * seconds), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


@pytest.mark.parametrize("orig, new", [(44100, 16000), (16000, 48000), (44101, 16000), (16000, 44101)])
def test_resampler_streams_like_one_pass(orig: int, new: int) -> None:
    """Any cut into blocks gives the same samples (bitwise), those of one pass of ``resample``."""
    x = torch.stack([_sine(orig, 1.3, 440, 0.5), _sine(orig, 1.3, 1000, 0.25)])
    whole = resample(x, orig, new)
    assert whole.shape == (2, resampled_length(x.shape[-1], orig, new))
    outputs = []
    for sizes in ([x.shape[-1]], [1, 7, 999, 65536, 100000], [12345] * 10):
        stream = Resampler(orig, new, 2)
        cuts = torch.tensor(sizes).cumsum(0).clamp(max=x.shape[-1]).tolist()
        pieces = [stream.push(x[:, a:b]) for a, b in zip([0] + cuts, cuts + [x.shape[-1]])]
        outputs.append(torch.cat(pieces + [stream.finish()], dim=-1))
    assert all(torch.equal(out, outputs[0]) for out in outputs)
    if uses_sinc(orig, new):  # torchaudio in one pass: the same up to float rounding
        torch.testing.assert_close(outputs[0], whole, atol=1e-5, rtol=0)
    else:  # soxr's stream is its one-shot result
        assert not uses_sinc(orig, new) and torch.equal(outputs[0], whole)


_RESAMPLE_CHILD = """
import math
from codec.audio.io import resample
orig, new = {orig}, {new}
t = torch.arange(orig, dtype=torch.float64) / orig
x = (0.5 * torch.sin(2 * math.pi * 1000 * t)).float()[None]  # 1 s, 1 kHz, amplitude 0.5
base = start(1 << 30)
y = resample(x, orig, new)[0]
growth = peak_growth(base)
t2 = torch.arange(y.shape[-1], dtype=torch.float64) / new
inner = slice(new // 20, -new // 20)  # away from the edges
error = (y.double() - 0.5 * torch.sin(2 * math.pi * 1000 * t2))[inner].abs().max().item()
rms = y[inner].double().pow(2).mean().sqrt().item()
spectrum = torch.fft.rfft(y[inner].double()).abs()
peak_hz = spectrum.argmax().item() * new / (2 * (spectrum.shape[0] - 1))
print(json.dumps(dict(growth=growth, length=y.shape[-1], error=error, rms=rms, peak_hz=peak_hz)))
"""


@pytest.mark.parametrize("orig, new", [(44101, 16000), (999983, 16000), (16000, 44101)])
def test_coprime_rates_resample_in_bounded_memory(orig: int, new: int) -> None:
    """torchaudio's kernel for 44,101 -> 16,000 Hz is 2.8 GB (999,983 Hz: 64 GB); a 1 s signal
    must take a few MB, and still be a sine of the same frequency and amplitude."""
    from .test_long_inputs import run_child

    out = run_child(_RESAMPLE_CHILD.format(orig=orig, new=new))
    assert out["growth"] < 64 << 20, out
    assert out["length"] == new
    assert abs(out["peak_hz"] - 1000) < 2 and out["error"] < 1e-3 and abs(out["rms"] - 0.5 / math.sqrt(2)) < 1e-3


_READ_CHILD = """
import soundfile as sf
import numpy as np
from codec.audio.io import read_audio
path = sys.argv[1]
base = start(1 << 30)
audio = read_audio(path)
print(json.dumps(dict(growth=peak_growth(base), shape=list(audio.samples.shape))))
"""


def test_read_audio_holds_the_samples_once(tmp_path: Path) -> None:
    """No whole-file NaN mask, no list of blocks joined at the end: the float32 samples plus a block."""
    from .test_long_inputs import run_child

    path = tmp_path / "long.wav"
    frames, rng = 5_000_000, np.random.default_rng(0)
    with sf.SoundFile(path, "w", 16000, 2, "PCM_16") as f:
        for _ in range(frames // 500_000):
            f.write((0.1 * rng.standard_normal((500_000, 2))).astype(np.float32))
    out = run_child(_READ_CHILD, str(path))
    size = frames * 2 * 4  # float32 samples: 40 MB
    assert out["shape"] == [2, frames] and out["growth"] < size + (16 << 20), out  # before: 3 x size


def test_usual_rates_keep_torchaudio() -> None:
    """Between the usual rates, resampling is torchaudio's, exactly as before; soxr only where its
    kernel would be large."""
    from torchaudio.functional import resample as ta_resample

    rates = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000]
    assert all(uses_sinc(a, b) for a in rates for b in rates)
    x = torch.from_numpy(_signal(44100, 2).T.copy())
    assert torch.equal(resample(x, 44100, 16000), ta_resample(x, 44100, 16000))
    assert not uses_sinc(44101, 16000) and not uses_sinc(16000, 44101) and not uses_sinc(999983, 16000)
