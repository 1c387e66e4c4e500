"""``nestdsl eval``'s numbers: per-stage error, size, counted MACs and measured latency.

Accuracy comes from one joint pass per batch (:func:`nestdsl.evaluate.evaluate`). MACs are
*counted* with ``torch.utils.flop_counter`` while anytime execution runs (two FLOPs per
multiply-accumulate, halved to MACs so the numbers read like ``nestdsl compile``'s), which
cross-checks the cost model on the real modules; ``params`` and ``macs`` of D_k alone come
from the cost model, because a standalone D_k runs dense (padded) weights whose zeros a
FLOP counter would count. Latencies are measured at batch 1 and at each requested batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from nestdsl.compiler.network import NestedNet
from nestdsl.cost import stage_costs
from nestdsl.diagnostics import fail
from nestdsl.evaluate.latency import Latency, cumulative, inference, stage_latencies
from nestdsl.evaluate.metrics import StageMetrics, evaluate

EVAL_BATCH = 256
"""Batch size of the accuracy pass (it does not change the numbers, only the speed)."""


@dataclass(frozen=True)
class EvalOptions:
    """What ``nestdsl eval`` measures, and where."""

    batches: tuple[int, ...] = (1,)
    """Batch sizes to time (each gives its own latency columns)."""
    repeats: int = 20
    warmup: int = 3
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cuda_graphs: bool = False
    """Time stages and standalone D_k replayed from CUDA graphs (a CUDA ``device`` only)."""


@dataclass(frozen=True)
class StageTiming:
    """Latencies of one stage at one batch size (milliseconds per batch)."""

    batch: int
    incremental: Latency
    """Stage k alone, after stages 1..k-1 ran (anytime execution on cached state)."""
    until: Latency
    """From the input to stage k's answer: stages 1..k in one anytime run."""
    standalone: Latency
    """``net.subnetwork(k)`` on its own."""

    def as_json(self) -> dict[str, Any]:
        return {
            name: {"median_ms": latency.median_ms, "p90_ms": latency.p90_ms}
            for name, latency in (
                ("incremental", self.incremental),
                ("until", self.until),
                ("standalone", self.standalone),
            )
        }


@dataclass(frozen=True)
class StageReport:
    """Everything ``eval`` reports about stage k."""

    metrics: StageMetrics
    params: int
    macs: int
    """D_k alone, one input (cost model, as ``nestdsl compile``)."""
    anytime_macs: int
    """Counted: stages 1..k of anytime execution, one input (heads 1..k included)."""
    incremental_macs: int
    """Counted: what stage k adds after stages 1..k-1, one input."""
    timings: tuple[StageTiming, ...]

    def as_json(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "stage": m.stage,
            "label": m.label,
            "top1_error": m.top1_error,
            "top5_error": m.top5_error,
            "loss": m.loss,
            "params": self.params,
            "macs": self.macs,
            "anytime_macs": self.anytime_macs,
            "incremental_macs": self.incremental_macs,
            "latency": {str(t.batch): t.as_json() for t in self.timings},
        }


@dataclass(frozen=True)
class EvalReport:
    """The whole evaluation; ``as_json`` is the ``--json`` document (docs/evaluation.md)."""

    network: str
    source: str
    split: str
    examples: int
    device: str
    repeats: int
    stages: tuple[StageReport, ...]
    cuda_graphs: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "source": self.source,
            "split": self.split,
            "examples": self.examples,
            "device": self.device,
            "repeats": self.repeats,
            "cuda_graphs": self.cuda_graphs,
            "stages": [stage.as_json() for stage in self.stages],
        }


def as_nested(net: torch.nn.Module) -> NestedNet:
    """The anytime network to evaluate; a standalone D_K run has no stages to step through."""
    if not isinstance(net, NestedNet):
        fail(
            "E911",
            "this run trained a standalone subnetwork, which has no anytime stages to evaluate",
            help="evaluate the nested run it came from (its stage K is the same D_K)",
        )
    return net


def counted_macs(net: NestedNet, x: Tensor) -> list[int]:
    """Multiply-accumulates per stage of anytime execution, counted on the modules for the
    batch ``x`` and divided by its size (per input)."""
    macs: list[int] = []
    with inference(net):
        state = net.start(x)
        for _ in range(net.num_stages):
            with FlopCounterMode(display=False) as counter:
                net.advance(state)
            macs.append(counter.get_total_flops() // (2 * x.shape[0]))
    return macs


def sample_batch(dataset: Dataset[tuple[Tensor, Tensor]], size: int) -> Tensor:
    """The first ``size`` images of ``dataset`` ([size, C, H, W]), cycling if it is smaller."""
    count = len(dataset)  # type: ignore[arg-type]
    return torch.stack([dataset[i % count][0] for i in range(size)])


def time_stages(
    net: NestedNet, x: Tensor, repeats: int, warmup: int, cuda_graphs: bool = False
) -> list[StageTiming]:
    """Incremental, until-ready and standalone latency of every stage for the batch ``x``."""
    timed = partial(stage_latencies, net, x, repeats=repeats, warmup=warmup)
    incremental = timed(cuda_graphs=cuda_graphs)
    standalone = timed(incremental=False, cuda_graphs=cuda_graphs)
    return [
        StageTiming(x.shape[0], inc, until, alone)
        for inc, until, alone in zip(incremental, cumulative(incremental), standalone, strict=True)
    ]


def evaluate_run(
    net: NestedNet,
    dataset: Dataset[tuple[Tensor, Tensor]],
    *,
    split: str,
    source: str,
    options: EvalOptions,
) -> EvalReport:
    """Evaluate ``net`` on ``dataset`` (one split of the run's data) as ``options`` ask."""
    device = options.device
    net = net.to(device)
    loader = DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False)
    metrics = evaluate(net, loader, device)
    one = sample_batch(dataset, 1).to(device)
    counted = counted_macs(net, one)
    if options.cuda_graphs and device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
    timings = [
        time_stages(
            net,
            sample_batch(dataset, b).to(device),
            options.repeats,
            options.warmup,
            options.cuda_graphs,
        )
        for b in _unique(options.batches)
    ]
    costs = stage_costs(net.ir)
    anytime = [sum(counted[: k + 1]) for k in range(len(counted))]
    stages = tuple(
        StageReport(
            metrics=metrics[k],
            params=costs[k].params,
            macs=costs[k].flops,
            anytime_macs=anytime[k],
            incremental_macs=counted[k],
            timings=tuple(per_batch[k] for per_batch in timings),
        )
        for k in range(net.num_stages)
    )
    return EvalReport(
        network=net.ir.name,
        source=source,
        split=split,
        examples=metrics[0].count if metrics else 0,
        device=str(device),
        repeats=options.repeats,
        stages=stages,
        cuda_graphs=options.cuda_graphs,
    )


def _unique(batches: Sequence[int]) -> list[int]:
    return sorted(set(batches))
