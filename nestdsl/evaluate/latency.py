"""Measured latency of each stage: incremental (on cached state) and standalone D_k.

Two numbers answer two questions. *Incremental* latency is what an anytime runtime pays for
stage k once stages 1..k-1 have run (``net.start`` / ``net.advance`` on the same state), so
``cumulative`` of it is the time until stage k's answer is ready. *Standalone* latency is the
cost of ``net.subnetwork(k)`` run alone, the network one would deploy if only stage k were
wanted. Both are timed per repeat, after warm-up runs, with the device synchronised before each
clock read, because an asynchronous GPU would otherwise be timed at kernel launch.

On a GPU, ``cuda_graphs=True`` times both replayed from CUDA graphs (``graphs.py``): each
stage and each D_k then costs one launch, the latency a deployment that captures its stages
would see, instead of eager execution's launch per kernel.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from nestdsl.evaluate.graphs import GraphedAnytime, GraphedCall

if TYPE_CHECKING:
    from nestdsl.compiler.network import NestedNet
    from nestdsl.ir import NestIR


class Modal(Protocol):
    """Something with a training and an eval mode (a module, or captured stages)."""

    @property
    def training(self) -> bool: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


Clock = Callable[[], float]
"""Seconds from an arbitrary origin (``time.perf_counter``; a fake one in tests)."""

_SYNC: dict[str, Callable[[torch.device], None]] = {
    "cuda": torch.cuda.synchronize,
    "mps": lambda _device: torch.mps.synchronize(),
}
"""Device types whose kernels run asynchronously, and how to wait for them."""


class Stages(Modal, Protocol):
    """What anytime execution runs (the runtime, incremental latency): a ``NestedNet``, or
    its stages captured as CUDA graphs (``graphs.GraphedAnytime``)."""

    ir: NestIR
    num_stages: int
    stage_labels: tuple[str, ...]

    def start(self, x: Tensor) -> Any: ...

    def advance(self, state: Any) -> Tensor: ...

    def anytime(self, x: Tensor) -> Iterator[Tensor]: ...


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU, which runs eagerly)."""
    sync = _SYNC.get(device.type)
    if sync is not None:
        sync(device)


@dataclass(frozen=True)
class Latency:
    """Repeated timings of one piece of work, in milliseconds, in the order measured."""

    samples_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("a latency needs at least one sample")

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.samples_ms))

    @property
    def p90_ms(self) -> float:
        """90th percentile, linearly interpolated between order statistics (numpy's default)."""
        ordered = sorted(self.samples_ms)
        position = 0.9 * (len(ordered) - 1)
        low, high = math.floor(position), math.ceil(position)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def mean_ms(self) -> float:
        return float(statistics.fmean(self.samples_ms))


@contextlib.contextmanager
def inference(net: Modal) -> Iterator[None]:
    """Eval mode and no autograd for the block, restoring the caller's mode afterwards."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        net.train(was_training)


def stage_latencies(
    net: NestedNet,
    x: Tensor,
    *,
    repeats: int = 20,
    warmup: int = 3,
    incremental: bool = True,
    cuda_graphs: bool = False,
    clock: Clock = time.perf_counter,
) -> list[Latency]:
    """One :class:`Latency` per stage for input ``x`` ([B, C, H, W], on the device to time).

    ``incremental=True`` times stage k on the state stages 1..k-1 left (one ``net.start``
    per repeat, then ``net.advance`` per stage); ``incremental=False`` times the standalone
    ``net.subnetwork(k)`` on ``x``. ``warmup`` untimed runs precede the ``repeats`` timed
    ones, so one-off costs (allocator growth, kernel selection) stay out of the samples.
    ``cuda_graphs=True`` (``x`` on a CUDA device) captures the stages, or each D_k, first and
    times their replays.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    with inference(net):
        if incremental:
            stages = GraphedAnytime(net, x) if cuda_graphs else net
            return _incremental(stages, x, repeats, warmup, clock)
        return _standalone(net, x, repeats, warmup, clock, cuda_graphs)


def cumulative(latencies: list[Latency]) -> list[Latency]:
    """Time until stage k is ready: per repeat, the sum of stages 1..k's samples.

    Summing per repeat (not adding medians) keeps each sample one real run through stage k,
    so medians and percentiles of the result are those of the whole run.
    """
    if len({len(latency.samples_ms) for latency in latencies}) > 1:
        raise ValueError("stages were timed with different numbers of repeats")
    sums = itertools.accumulate(
        (latency.samples_ms for latency in latencies),
        lambda total, more: tuple(a + b for a, b in zip(total, more, strict=True)),
    )
    return [Latency(samples) for samples in sums]


def measure(
    work: Callable[[], object],
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    clock: Clock = time.perf_counter,
) -> Latency:
    """Time ``work`` ``repeats`` times after ``warmup`` untimed runs, synchronising
    ``device`` around each run."""
    times = [_timed(work, device, clock) for _ in range(warmup + repeats)]
    return Latency(tuple(times[warmup:]))


def _timed(work: Callable[[], object], device: torch.device, clock: Clock) -> float:
    """Milliseconds ``work`` takes, with the device idle before and after."""
    synchronize(device)
    start = clock()
    work()
    synchronize(device)
    return (clock() - start) * 1000.0


def _incremental(net: Stages, x: Tensor, repeats: int, warmup: int, clock: Clock) -> list[Latency]:
    samples: list[list[float]] = [[] for _ in range(net.num_stages)]
    for run in range(warmup + repeats):
        state = net.start(x)
        times = [_timed(partial(net.advance, state), x.device, clock) for _ in samples]
        if run >= warmup:
            for stage_samples, elapsed in zip(samples, times, strict=True):
                stage_samples.append(elapsed)
    return [Latency(tuple(s)) for s in samples]


def _standalone(
    net: NestedNet, x: Tensor, repeats: int, warmup: int, clock: Clock, cuda_graphs: bool
) -> list[Latency]:
    reference = next(net.parameters())
    latencies: list[Latency] = []
    for k in range(1, net.num_stages + 1):
        sub = net.subnetwork(k).to(device=reference.device, dtype=reference.dtype).eval()
        run = GraphedCall(sub, x) if cuda_graphs else sub
        latencies.append(
            measure(partial(run, x), x.device, repeats=repeats, warmup=warmup, clock=clock)
        )
    return latencies
