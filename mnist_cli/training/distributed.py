"""Data-parallel training across processes started by torchrun.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process it starts. Every rank holds the
whole data set on its device and trains on its share of each global batch; DistributedDataParallel
averages the gradients. Rank 0 alone writes the run directory. Without torchrun, world_size() is 1
and every function here is a no-op.

The rank queries read only the environment, so the command line can use them before torch loads.
"""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def start(device_name: str) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU) and return this rank's device."""
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device


def stop() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            # The DistributedDataParallel wrapper is garbage in a reference cycle; its reducer holds
            # gloo work. Freed after the group is gone (at exit), it aborted the process ("terminate
            # called without an active exception"): free it now, and let every rank get here first.
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce `tensor` over all ranks in place (op: sum or max) and return it."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one without torchrun)."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    found: list[Any] = [None] * world_size()
    dist.all_gather_object(found, obj)
    return found
