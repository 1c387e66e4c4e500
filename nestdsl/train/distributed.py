"""torch.distributed plumbing: process-group setup, reductions, and a local launcher.

Design (see docs/training.md, "Distributed training"):

- ``batch_size`` is the *global* batch; each of the W ranks takes ``batch_size / W`` samples
  from a DistributedSampler whose order is the single-process order split round-robin, so a
  W-process step sees exactly the samples of the single-process step.
- Combining strategies (osgd, sgd-norm, ...) all-reduce (mean) each per-task gradient g_i
  *before* combining: Gram–Schmidt and norms are non-linear, so combining per rank and then
  averaging would not equal combining the global gradients. ``sgd`` and ``--standalone``
  all-reduce the ordinary gradient after one backward.
- Rank 0's initial weights are broadcast; only rank 0 writes the run directory and prints.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nestdsl.diagnostics import fail


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (world_size 1 means no torch.distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistContext:
    """Read RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE as torchrun (and
    :func:`launch`) set them."""
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        return DistContext(
            rank=dist.get_rank(),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    return DistContext(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def init(context: DistContext, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, NCCL on GPU); True when this call created it."""
    if not context.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        rank=context.rank,
        world_size=context.world_size,
        device_id=device if device.type == "cuda" else None,
    )
    return True


def shutdown(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (BatchNorm statistics included)."""
    for tensor in module.state_dict().values():
        if isinstance(tensor, Tensor):
            dist.broadcast(tensor, src=0)


class AsyncMean:
    """The ``reduce=`` hook given to fill_grad: mean over ranks, in place and asynchronous.

    Each call starts an all-reduce of one stage's flattened gradient and returns at once, so
    the collective overlaps the next stage's backward; fill_grad calls `wait` before it reads
    the results. NCCL averages directly (``ReduceOp.AVG``); gloo has no AVG, so it sums and
    `wait` divides. The tensor given is reduced in place: nothing is cloned.
    """

    def __init__(self) -> None:
        self.started: list[tuple[dist.Work, Tensor]] = []

    def __call__(self, flat: Tensor) -> Tensor:
        average = dist.get_backend() == "nccl"
        op = dist.ReduceOp.AVG if average else dist.ReduceOp.SUM
        work = dist.all_reduce(flat, op=op, async_op=True)
        assert work is not None
        self.started.append((work, flat if not average else flat.new_empty(0)))
        return flat

    def wait(self) -> None:
        """Complete every started reduction (and finish the mean where the backend summed)."""
        world = dist.get_world_size()
        for work, summed in self.started:
            work.wait()
            if summed.numel():
                summed.div_(world)
        self.started.clear()


def split_batch(batch_size: int, world_size: int) -> int:
    """``batch_size`` is global; each of the ``world_size`` ranks takes an equal share (T014)."""
    if batch_size % world_size:
        fail(
            "T014",
            f"batch size {batch_size} does not split evenly over {world_size} processes",
            help=f"use a batch size divisible by {world_size} (it is the global batch)",
        )
    return batch_size // world_size


def barrier(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(nproc: int, target: Callable[..., None], args: tuple[object, ...]) -> None:
    """Run ``target(rank, nproc, port, *args)`` in ``nproc`` fresh local processes.

    Uses the ``spawn`` start method (fork after torch has started threads is unsafe) and a
    free loopback port; raises the child's failure in the parent.
    """
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(
        target, args=(nproc, port, *args), nprocs=nproc, join=True, start_method="spawn"
    )


def child_environment(rank: int, nproc: int, port: int) -> None:
    """The torchrun-style variables :func:`from_env` reads, for a locally spawned rank."""
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
