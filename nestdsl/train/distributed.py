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
- Evaluation is sharded: each rank evaluates every W-th sample and the per-stage sums are
  all-reduced (`combine_metrics`), so no rank idles in a collective while another validates.
- ``--sync-bn`` (`synced_batchnorm`) normalizes with the statistics of the global batch.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from nestdsl.diagnostics import fail
from nestdsl.evaluate import StageMetrics


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


def combine_metrics(
    shards: Sequence[StageMetrics], labels: Sequence[str], first: int, device: torch.device
) -> list[StageMetrics]:
    """The metrics of the whole evaluation set from every rank's metrics of its shard.

    Hits, loss sums and counts are summed over ranks (one all-reduce), so the result equals
    one process evaluating everything. A rank whose shard was empty contributes zeros.
    """
    rows = torch.zeros(len(labels), 4, dtype=torch.float64)
    for i, m in enumerate(shards):
        rows[i] = torch.tensor(
            [round(m.top1 * m.count), round(m.top5 * m.count), m.loss * m.count, m.count]
        )
    rows = rows.to(device)
    dist.all_reduce(rows)
    totals = rows.cpu().tolist()
    return [
        StageMetrics(
            stage=first + i,
            label=label,
            top1=top1 / max(count, 1),
            top5=top5 / max(count, 1),
            loss=loss / max(count, 1),
            count=int(count),
        )
        for i, (label, (top1, top5, loss, count)) in enumerate(zip(labels, totals, strict=True))
    ]


class _SummedOverRanks(torch.autograd.Function):
    """A differentiable all-reduce (sum): y = Σ_r x_r on every rank, so ∂/∂x_r of every
    rank's loss is the sum over ranks of the gradients arriving at y."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        summed = tensor.clone()
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        summed = grad.clone()
        dist.all_reduce(summed)
        return summed


def synced_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """``F.batch_norm`` in training mode with the mean and variance of the global batch.

    One differentiable all-reduce of per-channel [sum, sum of squares, count] (its backward
    sums the gradients of every rank's loss), so W ranks normalize, and update the running
    statistics, exactly as one process with all W shares would.
    """
    channels = input.shape[1]
    dims = [d for d in range(input.dim()) if d != 1]
    x = input.float()
    count = torch.full((1,), input.numel() // channels, dtype=x.dtype, device=x.device)
    stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
    stats = _SummedOverRanks.apply(stats)
    total = stats[-1]
    mean = stats[:channels] / total  # [C]
    var = (stats[channels : 2 * channels] / total - mean * mean).clamp_min(0)  # [C], biased
    shape = [1, channels] + [1] * (input.dim() - 2)
    out = (x - mean.view(shape)) * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    if running_mean is not None and running_var is not None:
        factor = 0.1 if momentum is None else momentum
        with torch.no_grad():
            unbiased = var * total / (total - 1).clamp_min(1)
            running_mean.lerp_(mean.to(running_mean.dtype), factor)
            running_var.lerp_(unbiased.to(running_var.dtype), factor)
    return out.to(input.dtype)


class _SyncedBatchNorm(TorchFunctionMode):
    """Routes every training-mode ``F.batch_norm`` (a compiled network's or ``nn.BatchNorm*``)
    through :func:`synced_batch_norm`; everything else runs unchanged."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: object,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.batch_norm:
            call = dict(zip(_BN_ARGS, args, strict=False), **kwargs)
            if call.get("training", False):
                return synced_batch_norm(**call)
        return func(*args, **kwargs)


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


@contextlib.contextmanager
def synced_batchnorm(enabled: bool) -> Iterator[None]:
    """BatchNorm over the global batch while training, when ``enabled`` in a distributed run."""
    if not enabled or not (dist.is_available() and dist.is_initialized()):
        yield
        return
    with _SyncedBatchNorm():
        yield


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
