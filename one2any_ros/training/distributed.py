"""The training processes: one, or several under ``torchrun --nproc_per_node=K -m one2any_ros train`` (DDP, rank 0
validates, logs and saves), and SIGTERM handled like Ctrl-C so a stopped run keeps its state."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class Dist:
    """This process's place among the training processes (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; otherwise a single process."""
    from one2any_ros.core.model.device import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return Dist(rank, world, local), torch.device("cuda", local)
    return Dist(rank, world, local), torch.device("cpu")


def any_rank(flag: bool, info: Dist, dev: torch.device) -> bool:
    """True when ``flag`` is true on any process: every rank stops at the same step, or the others hang in
    all-reduce."""
    if info.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: Dist) -> None:
    """Wait for every process (none to wait for in a single one)."""
    if info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def sigterm_as_interrupt() -> Callable[[], Any]:
    """SIGTERM (``kill``, a session or job scheduler ending) stops training like Ctrl-C: the run state is saved
    before the process exits, so a background run loses nothing. Returns the function restoring the old handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)
