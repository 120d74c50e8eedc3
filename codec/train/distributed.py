"""Processes and devices: the torchrun process group (nccl on GPUs, gloo on CPUs), DDP wrapping,
agreement across ranks, and bf16 autocast on CUDA."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..devices import parse_device
from ..distributed import all_reduce_mean_
from ..errors import CodecError


@dataclass(frozen=True)
class DistributedEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """config.device as a usable torch.device ('auto': a GPU if there is one); a CodecError naming it."""
    try:
        return parse_device(name, use_cpu="--set device=cpu")
    except CodecError as e:
        raise CodecError(f"config.device: {e}") from None


def init_distributed(device_name: str) -> DistributedEnv:
    """Join the process group that torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size == 1:
        return DistributedEnv(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
    return DistributedEnv(dist.get_rank(), dist.get_world_size(), device)


def wrap_ddp(module: nn.Module, env: DistributedEnv) -> nn.Module:
    """``module`` inside DistributedDataParallel when there are several processes, else itself."""
    if env.world_size == 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    # EMA codebooks synchronise themselves (all-reduced statistics): no buffer broadcast per forward.
    return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def all_finite(losses: dict[str, Tensor], env: DistributedEnv) -> bool:
    """Whether every loss is finite on every rank (all ranks then skip or step together)."""
    flag = torch.tensor(float(all(torch.isfinite(v).all() for v in losses.values())), device=env.device)
    if env.world_size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def all_reduce_grads(params: Iterable[nn.Parameter], env: DistributedEnv) -> None:
    """Average the gradients of parameters that DDP does not handle over the ranks."""
    if env.world_size > 1:
        for p in params:
            if p.grad is not None:
                all_reduce_mean_(p.grad)


def autocast(env: DistributedEnv, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on CUDA when ``bf16``; nothing otherwise."""
    if env.device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
