"""Device names from users (``--device``, ``device:`` in configs), checked before any work."""

from __future__ import annotations

import torch

from .errors import CodecError


def parse_device(name: str, use_cpu: str = "--device cpu") -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' or 'auto' (a GPU if there is one) -> a usable torch.device;
    CodecError otherwise, advising ``use_cpu`` (how the user asks for the CPU)."""
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
