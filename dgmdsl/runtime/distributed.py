"""Multi-process training on torch.distributed: `dgm fit --nproc N` spawns N local
processes (gloo on CPU, NCCL on CUDA); under `torchrun` the environment says who we are.
Rank 0 alone logs, shows progress and writes checkpoints (see runtime/loop.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import RuntimeUserError

__all__ = ["Placement", "from_environment", "spawn", "init_process_group", "shutdown"]


@dataclass(frozen=True)
class Placement:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> Placement:
    """The placement torchrun (or our own spawn) put in the environment."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return Placement()
    return Placement(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                     int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def init_process_group(placement: Placement, device: torch.device) -> torch.device:
    """Join the group; on CUDA each local rank takes its own GPU."""
    import torch.distributed as dist

    if device.type == "cuda":
        if torch.cuda.device_count() <= placement.local_rank:
            raise RuntimeUserError(f"rank {placement.rank} needs GPU {placement.local_rank}, but only "
                                   f"{torch.cuda.device_count()} are visible", hint="lower --nproc")
        device = torch.device("cuda", placement.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=placement.rank, world_size=placement.world_size)
    return device


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _worker(local_rank: int, world_size: int, port: int, fn, args: tuple) -> None:
    # the launcher hosts the rendezvous store (as torchrun's agent does): every worker
    # connects to it as a client
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(local_rank),
                       "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
                       "TORCHELASTIC_USE_AGENT_STORE": "True"})
    fn(*args)


def spawn(nproc: int, fn, *args) -> None:
    """Run fn(*args) in nproc local processes joined through a store this process hosts.

    The store binds port 0 and keeps the socket, so no other program can take the port
    between picking it and binding it (picking a free port and closing it raced with
    concurrent launches)."""
    import torch.multiprocessing as mp
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, nproc, is_master=True, wait_for_workers=False)  # lives until we return
    mp.spawn(_worker, args=(nproc, store.port, fn, args), nprocs=nproc, join=True)
