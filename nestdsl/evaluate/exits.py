"""Confidence exits on real batches (budgeted batch classification, as MSDNet evaluates).

After stage k, an example whose top softmax probability reaches the threshold t_k leaves with
stage k's prediction, and ``state.keep`` drops its row, so later stages compute only for the
examples still undecided: the saving is real wall-clock time, not a simulation.

Thresholds are calibrated on the validation split for a target mean cost per example with a
geometric exit profile: the fraction of examples leaving at stage k is q_k ∝ r^k, with r
found by bisection so that sum_k q_k C_k equals the target (C_k: the cost of answering at
stage k, MACs or milliseconds); then t_k is the confidence that lets the q_k·N most confident
of the examples still present leave at stage k. r < 1 front-loads exits, r > 1 defers them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nestdsl.cost import stage_costs
from nestdsl.evaluate.latency import Latency, inference, measure

if TYPE_CHECKING:
    from nestdsl.compiler.network import NestedNet
    from nestdsl.evaluate.report import EvalOptions

Batches = Iterable[tuple[Tensor, Tensor]]

_BISECTION_STEPS = 100
_LOG_RATIO_RANGE = 50.0
"""r is searched in [e^-50, e^50]: every profile from all-at-stage-1 to all-at-stage-n."""


@dataclass(frozen=True)
class ExitOutcome:
    """Where each example of a batch left and what it predicted (both [B])."""

    predictions: Tensor
    stages: Tensor
    """1-based stage at which each example left."""


@dataclass(frozen=True)
class ExitPoint:
    """One point of the accuracy vs mean-MACs curve of confidence exits."""

    target: int
    thresholds: tuple[float, ...]
    mean_macs: float
    top1_error: float
    exits: tuple[int, ...]
    """How many examples left at each stage."""
    exit_ms: Latency
    """Wall clock of the whole split with exits (rows dropped as they leave)."""
    all_ms: Latency
    """Wall clock of the same split through every stage (anytime execution, no exits)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "target_macs": self.target,
            "thresholds": list(self.thresholds),
            "mean_macs": self.mean_macs,
            "top1_error": self.top1_error,
            "exits": list(self.exits),
            "exit_ms": {"median_ms": self.exit_ms.median_ms, "p90_ms": self.exit_ms.p90_ms},
            "all_stages_ms": {"median_ms": self.all_ms.median_ms, "p90_ms": self.all_ms.p90_ms},
        }


def answer_costs(net: NestedNet) -> list[int]:
    """C_k in MACs: what answering at stage k costs one example (anytime stages 1..k)."""
    costs = [cost.incremental_flops for cost in stage_costs(net.ir)]
    return [sum(costs[: k + 1]) for k in range(len(costs))]


def exit_batch(net: NestedNet, x: Tensor, thresholds: Sequence[float]) -> ExitOutcome:
    """Classify the batch ``x`` ([B, C, H, W]) with exits after stages 1..n-1.

    ``thresholds`` has one confidence per stage but the last, where everyone left answers.
    """
    if len(thresholds) != net.num_stages - 1:
        raise ValueError(f"need {net.num_stages - 1} thresholds, got {len(thresholds)}")
    predictions = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    stages = torch.empty_like(predictions)
    remaining = torch.arange(x.shape[0], device=x.device)  # rows of x still in the batch
    with inference(net):
        state = net.start(x)
        for k in range(1, net.num_stages + 1):
            confidence, predicted = net.advance(state).softmax(dim=1).max(dim=1)  # [b] each
            leave = confidence >= thresholds[k - 1] if k < net.num_stages else confidence >= 0
            predictions[remaining[leave]] = predicted[leave]
            stages[remaining[leave]] = k
            stay = ~leave
            remaining = remaining[stay]
            if remaining.numel() == 0:
                break
            state.keep(stay)
    return ExitOutcome(predictions, stages)


def exit_profile(costs: Sequence[float], target: float) -> list[float]:
    """Exit fractions q_k ∝ r^k whose expected cost sum_k q_k C_k is ``target`` (clamped to
    the cheapest and dearest profiles)."""

    def profile(log_r: float) -> list[float]:
        logs = [log_r * k for k in range(len(costs))]
        top = max(logs)
        weights = [math.exp(v - top) for v in logs]
        return [w / sum(weights) for w in weights]

    def expected(log_r: float) -> float:
        return sum(q * c for q, c in zip(profile(log_r), costs, strict=True))

    low, high = -_LOG_RATIO_RANGE, _LOG_RATIO_RANGE
    for _ in range(_BISECTION_STEPS):  # expected cost grows with r
        middle = (low + high) / 2
        low, high = (middle, high) if expected(middle) < target else (low, middle)
    return profile((low + high) / 2)


def calibrate(confidences: Tensor, costs: Sequence[float], target: float) -> list[float]:
    """Thresholds t_1..t_{n-1} from validation confidences ([n, N]: max softmax per stage and
    example) so that about q_k·N examples leave at stage k (:func:`exit_profile`)."""
    stages, count = confidences.shape
    fractions = exit_profile(costs, target)
    present = torch.ones(count, dtype=torch.bool)
    thresholds: list[float] = []
    for k in range(stages - 1):
        remaining = int(present.sum())
        leaving = min(round(fractions[k] * count), remaining)
        if leaving == 0:
            thresholds.append(math.inf)
            continue
        threshold = (  # all the rest leave: so must unseen examples, however unsure
            0.0 if leaving == remaining else float(confidences[k][present].topk(leaving).values[-1])
        )
        thresholds.append(threshold)
        present &= confidences[k] < threshold
    return thresholds


def confidences(net: NestedNet, batches: Batches, device: torch.device) -> Tensor:
    """Max softmax probability of every stage for every example ([n, N]), one joint pass."""
    columns: list[Tensor] = []
    with inference(net):
        for images, _ in batches:
            outputs = net(images.to(device))
            columns.append(torch.stack([o.softmax(dim=1).max(dim=1).values for o in outputs]))
    return torch.cat(columns, dim=1).cpu()


def exit_curve(
    net: NestedNet,
    val: Dataset[tuple[Tensor, Tensor]],
    test: Dataset[tuple[Tensor, Tensor]],
    targets: Sequence[int],
    options: EvalOptions,
) -> list[ExitPoint]:
    """Calibrate on ``val`` for each target mean MACs, then score and time on ``test`` in
    batches of the largest of ``options.batches``."""
    device = options.device
    net = net.to(device)
    size = max(options.batches)
    val_conf = confidences(net, DataLoader(val, batch_size=size), device)
    batches = [(x.to(device), y.to(device)) for x, y in DataLoader(test, batch_size=size)]
    costs = answer_costs(net)
    repeats, warmup = options.repeats, options.warmup
    all_ms = measure(partial(_all_stages, net, batches), device, repeats=repeats, warmup=warmup)
    points = []
    for target in targets:
        thresholds = calibrate(val_conf, costs, target)
        outcomes = [exit_batch(net, x, thresholds) for x, _ in batches]
        stages = torch.cat([o.stages for o in outcomes]).cpu()
        labels = torch.cat([y for _, y in batches])
        right = int((torch.cat([o.predictions for o in outcomes]) == labels).sum())
        exits = torch.bincount(stages - 1, minlength=net.num_stages)
        points.append(
            ExitPoint(
                target=target,
                thresholds=tuple(thresholds),
                mean_macs=float(torch.tensor(costs, dtype=torch.float64)[stages - 1].mean()),
                top1_error=1.0 - right / stages.numel(),
                exits=tuple(int(n) for n in exits),
                exit_ms=measure(
                    partial(_with_exits, net, batches, thresholds),
                    device,
                    repeats=repeats,
                    warmup=warmup,
                ),
                all_ms=all_ms,
            )
        )
    return points


def _all_stages(net: NestedNet, batches: list[tuple[Tensor, Tensor]]) -> None:
    with inference(net):
        for x, _ in batches:
            for _ in net.anytime(x):
                pass


def _with_exits(
    net: NestedNet, batches: list[tuple[Tensor, Tensor]], thresholds: Sequence[float]
) -> None:
    for x, _ in batches:
        exit_batch(net, x, thresholds)
