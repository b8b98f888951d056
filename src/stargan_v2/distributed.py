"""Many processes with PyTorch's own engine: ``torchrun`` and DistributedDataParallel.

The same training code runs in one process or in many. Under ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address) every process trains on its own shard of each
step's batch; gradients are averaged across processes by DDP, so every process holds the same weights after
every update. Rank 0 alone writes logs, samples and checkpoints.

Launch::

    torchrun --nproc_per_node=4 -m stargan_v2 train --data DIR --preset afhq --run-dir runs/afhq
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m stargan_v2 train ...
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank, how many processes there are, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment holds torchrun's variables."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str = "auto", timeout_minutes: float = 30.0) -> Dist:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU); otherwise one process.

    ``device`` is ``auto`` (CUDA when available), ``cpu`` or ``cuda``; under torchrun each process takes the GPU
    of its ``LOCAL_RANK``. Calling it when the group already exists returns the current state.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if not launched_by_torchrun():
        if device == "auto":
            return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
        return Dist(device=torch.device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs: "
                "use --nproc_per_node at most the number of GPUs"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown() -> None:
    """Leave the process group (a no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    """Wait for every process (a no-op in one process)."""
    if d.enabled:
        dist.barrier()


def mean_across(d: Dist, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Average scalar tensors over all processes in one collective (a no-op in one process).

    Used only at log intervals, so the training step itself never waits for it.
    """
    if not d.enabled or not values:
        return values
    keys = sorted(values)
    flat = torch.stack([values[k].detach().float().reshape(()) for k in keys]).to(d.device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= d.world_size
    return {k: flat[i] for i, k in enumerate(keys)}


def sum_across(d: Dist, value: int) -> int:
    """The sum of an integer over all processes (a no-op in one process)."""
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.long, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def any_across(d: Dist, flag: bool) -> bool:
    """True when ``flag`` is true in any process: lets one rank's Ctrl-C or time budget stop every rank."""
    return sum_across(d, int(flag)) > 0
