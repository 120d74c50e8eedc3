"""Sample-rate conversion whose memory never depends on the gcd of the two rates.

Two methods, chosen by the size of torchaudio's polyphase kernel for the pair of rates:

- torchaudio's Hann-windowed sinc (``torchaudio.functional.resample`` defaults: 6 zero
  crossings, rolloff 0.99) when its kernel is small. With g = gcd(orig, new) it holds
  ``new/g x (orig/g + 2 width)`` coefficients: 76,000 for 44.1 -> 16 kHz, at most 582,400
  (11.025 -> 32 kHz) between any two of 8, 11.025, 12, 16, 22.05, 24, 32, 44.1, 48, 88.2, 96,
  176.4 and 192 kHz. This is what the toolkit always used, unchanged for those rates.
- libsoxr (python-soxr, "HQ") otherwise: coprime rates such as 44,101 -> 16,000 Hz would
  need a 2.8 GB kernel above (999,983 Hz: 64 GB); soxr converts any ratio with a few MB.

Both give ceil(T * new / orig) samples for T input samples, the signal taken as zero outside.

``Resampler`` does the same conversion block by block (files that are never held whole).
The sinc method cuts its work at fixed input positions, groups of orig/g samples, each
block read with ``width`` samples of context on both sides::

    input  |<- width ->|<-------- G groups x orig/g -------->|<- width ->|
    output             |<-------- G groups x new/g  -------->|

so its output never depends on how the input was cut into blocks, and equals one pass of
torchaudio up to float32 rounding (a few 1e-6). soxr's stream is bitwise its one-shot result.
``resample`` of a whole tensor is torchaudio's function itself (sinc) or one ``Resampler``
pass (soxr).
"""

from __future__ import annotations

import math

import numpy as np
import soxr
import torch
import torchaudio.functional as AF

SINC_MAX_COEFFICIENTS = 1 << 20  # larger torchaudio kernels (4 MiB float32) use soxr instead
SINC_BLOCK = 1 << 16  # input samples per block of the streaming sinc method
LOWPASS_WIDTH = 6  # zero crossings of the sinc (torchaudio's default)
ROLLOFF = 0.99  # cut-off as a fraction of the lower Nyquist rate (torchaudio's default)


def _reduced(orig_sr: int, target_sr: int) -> tuple[int, int]:
    g = math.gcd(orig_sr, target_sr)
    return orig_sr // g, target_sr // g


def sinc_width(orig_sr: int, target_sr: int) -> int:
    """Input samples of context on each side of the sinc kernel."""
    orig, new = _reduced(orig_sr, target_sr)
    return math.ceil(LOWPASS_WIDTH * orig / (min(orig, new) * ROLLOFF))


def uses_sinc(orig_sr: int, target_sr: int) -> bool:
    """Whether torchaudio's sinc kernel for these rates is small enough (else soxr is used)."""
    orig, new = _reduced(orig_sr, target_sr)
    return new * (orig + 2 * sinc_width(orig_sr, target_sr)) <= SINC_MAX_COEFFICIENTS


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """ceil(T * target / orig): the output length of both methods."""
    return -(-num_samples * target_sr // orig_sr)


def resample(samples: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample [..., T] -> [..., ceil(T * target_sr / orig_sr)]; identity when the rates match.

    torchaudio's sinc for the usual rates, soxr where that kernel would be large (see above).
    """
    if orig_sr == target_sr:
        return samples
    if uses_sinc(orig_sr, target_sr):
        return AF.resample(samples, orig_sr, target_sr)
    flat = samples.reshape(-1, samples.shape[-1])  # [N, T]
    stream = Resampler(orig_sr, target_sr, flat.shape[0])
    out = torch.cat([stream.push(flat), stream.finish()], dim=-1)
    return out.reshape(*samples.shape[:-1], out.shape[-1])


def _sinc_kernel(orig: int, new: int, width: int) -> torch.Tensor:
    """torchaudio's kernel for reduced rates: [new, 1, orig + 2 width], row i = output phase i."""
    base = min(orig, new) * ROLLOFF
    idx = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # input times, [K]
    phase = torch.arange(0, -new, -1)[:, None] / new  # float32, as torchaudio computes it
    t = (phase + idx) * base  # [new, K] float64
    t = t.clamp(-LOWPASS_WIDTH, LOWPASS_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), t.sin() / t)
    return (sinc * window * (base / orig)).to(torch.float32)[:, None, :]


class Resampler:
    """Streaming resampler: ``push`` blocks [C, n], get the resampled samples [C, m] each makes
    available; ``finish`` returns the rest. The concatenated output is that of ``resample`` on
    the whole signal (bitwise with soxr; to float rounding with the sinc), whatever the blocks."""

    def __init__(self, orig_sr: int, target_sr: int, channels: int) -> None:
        self.orig_sr, self.target_sr, self.channels = orig_sr, target_sr, channels
        self.num_in = 0  # samples pushed so far
        self.num_out = 0  # samples returned so far
        self._soxr: soxr.ResampleStream | None = None
        self._kernel: torch.Tensor | None = None
        if orig_sr == target_sr:
            return
        if uses_sinc(orig_sr, target_sr):
            self._orig, self._new = _reduced(orig_sr, target_sr)
            self._width = sinc_width(orig_sr, target_sr)
            self._kernel = _sinc_kernel(self._orig, self._new, self._width)
            self._groups = max(1, SINC_BLOCK // self._orig)  # groups per block
            self._pending = torch.zeros(channels, self._width)  # input from (groups done) x orig - width
        else:
            self._soxr = soxr.ResampleStream(orig_sr, target_sr, channels, dtype="float32", quality="HQ")

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """[C, n] -> [C, m]: the output samples this block completes (m may be 0)."""
        self.num_in += block.shape[-1]
        if self._kernel is not None:
            out = self._sinc(block, final=False)
        elif self._soxr is not None:
            out = self._soxr_chunk(block, last=False)
        else:
            out = block
        self.num_out += out.shape[-1]
        return out

    def finish(self) -> torch.Tensor:
        """The remaining output [C, m]: the total is ceil(pushed x target / orig) samples."""
        target = resampled_length(self.num_in, self.orig_sr, self.target_sr)
        if self._kernel is not None:
            out = self._sinc(self._pending[:, :0], final=True)
        elif self._soxr is not None:
            # zeros past the end so that soxr returns at least ``target`` samples in all
            tail = torch.zeros(self.channels, -(-self.orig_sr // self.target_sr) + 1)
            out = self._soxr_chunk(tail, last=True)
        else:
            return torch.zeros(self.channels, 0)
        out = out[..., : max(0, target - self.num_out)]
        out = torch.nn.functional.pad(out, (0, target - self.num_out - out.shape[-1]))
        self.num_out += out.shape[-1]
        return out

    def _soxr_chunk(self, block: torch.Tensor, last: bool) -> torch.Tensor:
        x = np.ascontiguousarray(block.detach().to("cpu", torch.float32).numpy().T)  # [n, C]
        y = self._soxr.resample_chunk(x, last=last)  # type: ignore[union-attr]
        return torch.from_numpy(np.ascontiguousarray(y.reshape(-1, self.channels).T)).to(block.device, block.dtype)

    def _sinc(self, block: torch.Tensor, final: bool) -> torch.Tensor:
        """Whole blocks of ``_groups`` output groups as their input arrives; with ``final``, the
        groups left up to the total length, the input padded with zeros."""
        kernel = self._kernel.to(block.device, block.dtype)  # type: ignore[union-attr]
        pending = torch.cat([self._pending.to(block.device, block.dtype), block], dim=-1)
        span = self._groups * self._orig  # input samples per whole block
        context = 2 * self._width + self._orig  # input one group needs, minus the stride
        outputs, used = [], 0
        while pending.shape[-1] - used >= span + 2 * self._width:
            outputs.append(self._apply(pending[:, used : used + span + 2 * self._width], kernel))
            used += span
        if final:
            target = resampled_length(self.num_in, self.orig_sr, self.target_sr)
            done = self.num_out + sum(o.shape[-1] for o in outputs)
            groups = -(-(target - done) // self._new)  # groups still to compute
            while groups > 0:
                n = min(groups, self._groups)
                need = (n - 1) * self._orig + context
                piece = pending[:, used : used + need]
                piece = torch.nn.functional.pad(piece, (0, need - piece.shape[-1]))
                outputs.append(self._apply(piece, kernel))
                used, groups = used + n * self._orig, groups - n
        self._pending = pending[:, used:]
        return torch.cat(outputs, dim=-1) if outputs else block.new_zeros(block.shape[0], 0)

    def _apply(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """x [C, (G - 1) orig + orig + 2 width] -> [C, G new] (torchaudio's strided conv)."""
        y = torch.nn.functional.conv1d(x[:, None], kernel, stride=self._orig)  # [C, new, G]
        return y.transpose(1, 2).reshape(x.shape[0], -1)
