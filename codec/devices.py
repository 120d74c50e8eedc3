"""Where torch runs: device names from users (``--device``, ``device:`` in configs), checked before
any work, how many CPU threads it may use (``--threads``, $CODEC_THREADS), and how its memory
allocator reuses freed memory."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import TYPE_CHECKING

from .errors import CodecError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

THREADS_ENV = "CODEC_THREADS"
# glibc's own malloc tuning variables: when the user sets one, reuse_freed_memory leaves malloc alone
GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def parse_device(name: str, use_cpu: str = "--device cpu") -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' or 'auto' (a GPU if there is one) -> a usable torch.device;
    CodecError otherwise, advising ``use_cpu`` (how the user asks for the CPU)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CodecError(f"Unknown device {name!r}; use cpu, cuda, cuda:N or auto.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CodecError(f"Device {name!r} is not available: this machine has no usable CUDA GPU "
                             f"(or torch was built without CUDA); use {use_cpu}.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CodecError(f"Device {name!r} is not available: this machine has {torch.cuda.device_count()} "
                             "CUDA GPU(s).")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CodecError(f"Device {name!r} is not available on this machine; use {use_cpu}.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CodecError(f"Device {name!r} is not supported; use cpu, cuda, cuda:N or auto.")
    return device


def choose_threads(requested: int | None = None, processes: int | None = None) -> int:
    """Torch threads for one of ``processes`` processes that share this machine's CPUs (None: the
    torchrun ranks on this machine, $LOCAL_WORLD_SIZE, else 1).

    A count the user gave wins: ``requested`` (--threads), else $CODEC_THREADS. Otherwise: the CPUs
    this process may run on, less the 1-minute load average, shared among ``processes``, at least 1.
    OpenMP threads spin-wait for each other, so threads that a busy CPU cannot run at once make a
    step about 10x slower, where one thread too few costs a little.
    """
    if requested is not None:
        return _thread_count(requested, "--threads")
    if value := os.environ.get(THREADS_ENV, "").strip():
        return _thread_count(value, THREADS_ENV)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this system
        busy = 0
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = max(1, (cpus - busy) // max(1, processes))
    log.debug("%d torch threads: %d CPUs, load %d, %d process(es)", threads, cpus, busy, processes)
    return threads


def _thread_count(value: int | str, name: str) -> int:
    """``value`` as a number of threads; CodecError naming ``name`` unless it is a whole number >= 1."""
    try:
        count = int(value) if isinstance(value, str) or type(value) is int else 0
    except ValueError:
        count = 0
    if count < 1:
        raise CodecError(f"{name} must be a whole number of threads, at least 1, got {value!r}.")
    return count


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MB (its largest heap block) for reuse, and up
    to 256 MB of them idle, instead of handing each back to the system and page-faulting it in again
    at the next allocation. Coding a 10 s clip allocates and frees 5-10 MB activations at every
    layer: this makes the default model's encoder about 1.25x faster (README, Development), with
    the same outputs. Returns whether malloc was tuned: not with another C library, nor when the
    user set one of glibc's own MALLOC_*_ variables (those then rule)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in GLIBC_MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no glibc mallopt
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def apply_threads(requested: int | None = None, processes: int | None = None) -> int:
    """Give torch ``choose_threads(requested, processes)`` intra-op threads (and as many inter-op
    threads, which torch allows only before its first parallel work) and tune malloc
    (``reuse_freed_memory``); returns the thread count."""
    import torch

    reuse_freed_memory()
    threads = choose_threads(requested, processes)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has started: keep the inter-op pool as it is
        pass
    log.info("torch uses %d CPU threads", threads)
    return threads
