"""torchrun / DistributedDataParallel plumbing: the same code runs as one process (CPU or one GPU) or as
several (gloo on CPU, nccl on GPUs), one per device, multi-node included.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op for one process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from core.device import pick_device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def is_main() -> bool:
    return rank_and_world()[0] == 0


def setup(device: str = "auto") -> torch.device:
    """The device of this process, joining the process group first when launched by torchrun.

    Under torchrun with CUDA each process takes GPU LOCAL_RANK and nccl; on CPU gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return pick_device(device)
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not is_distributed():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather(obj) -> list:
    """Every process's `obj` (any picklable value), in rank order, on every process."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's `obj` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
