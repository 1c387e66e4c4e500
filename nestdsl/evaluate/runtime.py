"""The anytime runtime: run stages in order until a deadline or a MAC budget, keep the last
answer that was ready.

A stage's kernels cannot be stopped midway, so a stage that finishes after the deadline is
discarded and no later stage is started; a MAC budget is known in advance, so only the stages
whose cumulative multiply-accumulates fit are run at all. When no stage finished, the result
says so (stage 0, no logits): the runtime never guesses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from nestdsl.evaluate.graphs import GraphedAnytime
from nestdsl.evaluate.latency import Clock, Stages, inference, synchronize

if TYPE_CHECKING:
    from nestdsl.compiler.network import NestedNet


@dataclass(frozen=True)
class Budget:
    """How much an answer may cost: wall-clock ``seconds``, multiply-accumulates per example
    (``macs``), or both (whichever stops first); None means no limit of that kind."""

    seconds: float | None = None
    macs: int | None = None

    def __post_init__(self) -> None:
        if self.seconds is not None and not self.seconds >= 0:
            raise ValueError(f"a deadline must be >= 0 seconds, got {self.seconds}")
        if self.macs is not None and self.macs < 0:
            raise ValueError(f"a MAC budget must be >= 0, got {self.macs}")


@dataclass(frozen=True)
class AnytimeResult:
    """What the runtime had when it stopped.

    ``stage`` is the last stage that finished within the budget (0: none did, and ``logits``
    is None); ``logits`` are that stage's ([B, classes]); ``elapsed_s`` is the time from the
    call to that stage's answer (with stage 0: to the moment the budget ran out).
    """

    stage: int
    label: str | None
    logits: Tensor | None
    elapsed_s: float

    @property
    def prediction(self) -> Tensor | None:
        """Class indices ([B]) of the stage reached, or None when no stage finished."""
        return None if self.logits is None else self.logits.argmax(dim=-1)


def affordable_stages(net: Stages, macs: int | None) -> int:
    """How many stages fit in ``macs`` per example (anytime execution: new units + heads)."""
    from nestdsl.cost import stage_costs

    if macs is None:
        return net.num_stages
    spent = 0
    for cost in stage_costs(net.ir):
        spent += cost.incremental_flops
        if spent > macs:
            return cost.stage - 1
    return net.num_stages


def run_within(
    net: Stages, x: Tensor, budget: Budget, *, clock: Clock = time.perf_counter
) -> AnytimeResult:
    """One anytime run of the batch ``x`` ([B, C, H, W]) under ``budget``, in eval mode."""
    limit = math.inf if budget.seconds is None else budget.seconds
    stages = affordable_stages(net, budget.macs)
    with inference(net):
        start = clock()
        best = AnytimeResult(0, None, None, 0.0)
        for k, logits in _stages(net, x, stages):
            synchronize(x.device)
            elapsed = clock() - start
            if elapsed > limit:
                return best if best.stage else AnytimeResult(0, None, None, elapsed)
            best = AnytimeResult(k, net.stage_labels[k - 1], logits, elapsed)
        return best


def run_each(
    net: Stages, x: Tensor, budget: Budget, *, clock: Clock = time.perf_counter
) -> list[AnytimeResult]:
    """Per-example results: each row of ``x`` runs alone (batch 1) with its own budget, as a
    server answering one request at a time would."""
    return [run_within(net, row.unsqueeze(0), budget, clock=clock) for row in x]


def _stages(net: Stages, x: Tensor, stages: int) -> Iterator[tuple[int, Tensor]]:
    state = net.start(x)
    for k in range(1, stages + 1):
        yield k, net.advance(state)


def serve(
    net: NestedNet, x: Tensor, budget: Budget, *, cuda_graphs: bool = False
) -> list[AnytimeResult]:
    """Answer each row of ``x`` alone under ``budget``, as ``nestdsl run`` does, after one
    untimed pass over every stage so that one-off start-up costs (allocations, kernel
    selection) do not make the first input miss its deadline. ``cuda_graphs``: replay each
    stage from a CUDA graph captured for one input (``evaluate.graphs``), so that a stage
    costs one launch instead of one per kernel."""
    stages: Stages = GraphedAnytime(net, x[:1]) if cuda_graphs else net
    with inference(stages):
        for _ in stages.anytime(x[:1]):
            pass
    return run_each(stages, x, budget)
