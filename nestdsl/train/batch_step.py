"""One optimisation step per training mode, all ending in ``fill_grad`` + ``optimizer.step``.

A step is two halves: ``backward_step`` (forward, losses, ``stage_backward``: device work that
never reads a value on the host, so ``nestdsl.train.graphed`` can record it as a CUDA graph)
and ``finish_step`` (the direction's ``finish``, then the optimizer); ``train_step`` runs both.

Modes and how they compute the stage losses:

- ``joint`` (strategy ``sgd``): one joint ``net(x)``; fill_grad does one backward of
  Σ k_i L_i / Σ k_i.
- ``anytime`` (sgd-norm, osgd, osgd-norm, mtl:*): losses from ``net.anytime(x)``, so the
  backward of L_k traverses D_k only; fill_grad combines the per-task gradients. With
  ``task_graph`` resolving to ``joint`` the same strategies take their losses from one joint
  ``net(x)`` instead: each backward traverses the whole joint graph (zeros where a layer's
  later stripes do not feed L_k), which costs more FLOPs in fewer, larger kernels.
- ``greedy`` (phase k of Algorithm 1): only stages 1..k run, stages 1..k-1 in eval mode
  (frozen: their BatchNorm normalizes with, and keeps, its running statistics); L_k flows
  into w_k \\ w_(k-1).
- ``standalone`` (D_k alone with ``--standalone k``, or the Oracle network with ``--oracle k``):
  one output, plain cross-entropy.

fp16 loss scaling with a gradient-combining optimizer: the losses are multiplied by the
GradScaler's scale S so that small fp16 gradients survive the backward pass, and S itself
(a device tensor, never read on the host here) is handed to ``fill_grad``, which computes the
coefficients from the true gradients' Gram matrix (NormSGD's normalization is not
scale-equivariant, so combining scaled gradients would be wrong) and writes S times the
direction, so that ``scaler.step`` can unscale it, detect inf/NaN (an overflow anywhere
poisons the combination, which then is non-finite too) and skip the step as usual. No step
reads a device value on the host except the Gram matrix that the coefficients need.

A non-finite loss is kept on the device by `LossWatch` and reported (stage and step) at the
next check, every CHECK_EVERY steps and at every epoch end, before checkpointing: the last
checkpoint on disk is therefore always one of finite training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.diagnostics import fail
from nestdsl.evaluate import stage_outputs
from nestdsl.optim import FlatGradients, PendingDirection, Reduce, stage_backward
from nestdsl.optim.strategies import SINGLE_LOSS
from nestdsl.train.config import TrainConfig, task_graph_of
from nestdsl.train.devices import Runtime

CHECK_EVERY = 100
"""Steps between two host reads of `LossWatch` within an epoch (one small sync each)."""


def _joint(model: Any, images: Tensor, stages: int) -> list[Tensor]:
    return stage_outputs(model(images))


def _anytime(model: Any, images: Tensor, stages: int) -> list[Tensor]:
    return list(islice(model.anytime(images), stages))


def _frozen_prefix(model: Any, images: Tensor, stages: int) -> list[Tensor]:
    """Greedy phase k: stages 1..k-1 run in eval mode, stage k in the model's own mode."""
    training = model.training
    outputs: list[Tensor] = []
    model.train(training and stages == 1)
    for logits in model.anytime(images):
        outputs.append(logits)
        if len(outputs) == stages:
            break
        if len(outputs) == stages - 1:
            model.train(training)
    return outputs


FORWARDS: dict[str, Callable[[Any, Tensor, int], list[Tensor]]] = {
    "joint": _joint,
    "anytime": _anytime,
    "greedy": _frozen_prefix,
    "standalone": _joint,
}


@dataclass
class StepPlan:
    """What one phase of training optimises, resolved once per phase."""

    mode: str
    model: nn.Module
    strategy: str
    stage_params: list[list[nn.Parameter]]
    optimizer: torch.optim.Optimizer
    active_stage: int | None = None
    priority: list[int] | None = None
    importances: list[float] | None = None
    norm_constant: float = 0.5
    reduce: Reduce | None = None
    scaler: torch.amp.GradScaler | None = None
    loss_scale: float = 1.0
    """Multiplies every loss before the combination: n turns Eq. 1's mean into a sum."""
    capture: FlatGradients | None = None
    """Parameters whose gradients may arrive as one flat vector (``NestedNet.bank``)."""

    @property
    def stages(self) -> int:
        return len(self.stage_params)


def mode_of(config: TrainConfig, device: str) -> str:
    """Which forward/step a config trains with on ``device`` (a device type).

    Per-task strategies run ``anytime`` or ``joint`` (``config.task_graph``, resolved by
    ``task_graph_of``): the gradients agree, since loss k depends on D_k alone in both graphs;
    only their cost differs.
    """
    if config.standalone is not None or config.oracle is not None:
        return "standalone"
    graph = task_graph_of(config, device)
    if graph is not None:
        return graph
    return {"sgd": "joint", "sgd-sum": "joint", "greedy": "greedy"}[config.strategy]


def train_step(plan: StepPlan, runtime: Runtime, images: Tensor, labels: Tensor) -> list[Tensor]:
    """Forward, combine the stage gradients into ``.grad``, step; return the detached losses."""
    return finish_step(plan, backward_step(plan, runtime, images, labels))


@dataclass(frozen=True)
class Backward:
    """A step up to where it first needs the host: its losses (detached) and the direction,
    which ``finish_step`` completes."""

    losses: list[Tensor]
    direction: PendingDirection


def backward_step(
    plan: StepPlan, runtime: Runtime, images: Tensor, labels: Tensor, *, cast_cache: bool = True
) -> Backward:
    """Forward and backward passes, without reading any device value on the host (so a CUDA
    graph can record it: ``nestdsl.train.graphed``, which needs ``cast_cache=False``)."""
    with runtime.autocast(cache=cast_cache):
        outputs = FORWARDS[plan.mode](plan.model, images, plan.stages)
        losses = [F.cross_entropy(out.float(), labels) for out in outputs]
    weighted = [loss * plan.loss_scale for loss in losses] if plan.loss_scale != 1 else losses
    scaler = plan.scaler
    losses_in = weighted if scaler is None else [scaler.scale(loss) for loss in weighted]
    grad_scale = None
    if scaler is not None and plan.strategy not in SINGLE_LOSS:
        grad_scale = scaler.scale(torch.ones((), device=losses[0].device))
    direction = stage_backward(
        losses_in,
        plan.stage_params,
        plan.strategy,
        plan.priority,
        importances=plan.importances,
        norm_constant=plan.norm_constant,
        active_stage=plan.active_stage,
        reduce=plan.reduce,
        loss_scale=grad_scale,
        capture=plan.capture,
    )
    return Backward([loss.detach() for loss in losses], direction)


def finish_step(plan: StepPlan, backward: Backward) -> list[Tensor]:
    """Write the direction into ``.grad`` and let the optimizer step; return the losses."""
    backward.direction.finish()
    if plan.scaler is not None:
        plan.scaler.step(plan.optimizer)
        plan.scaler.update()
    else:
        plan.optimizer.step()
    return backward.losses


class LossWatch:
    """The first (step, stage) whose loss was NaN or infinite, looked for on the device.

    `observe` copies a step's losses into a device buffer (one op, no synchronisation: the
    watch must not slow a step whose host work is a handful of ops); `check` looks at the
    buffered steps (one sync) and stops the run with a T018 error naming the stage and step.
    """

    def __init__(self, first_stage: int = 1) -> None:
        self.first_stage = first_stage
        self._buffer: Tensor | None = None  # (CHECK_EVERY, stages): the steps since a check
        self._rows = 0
        self._first_step = 0  # the global step of the buffer's first row

    def observe(self, losses: Tensor, step: int) -> None:
        """Note this step's losses ((stages,), 0-based global `step`; steps come in order);
        check every CHECK_EVERY steps."""
        if self._buffer is None:
            self._buffer = losses.new_empty((CHECK_EVERY, losses.numel()))
        if not self._rows:
            self._first_step = step
        self._buffer[self._rows].copy_(losses)
        self._rows += 1
        if self._rows == CHECK_EVERY:
            self.check()

    def check(self) -> None:
        """Raise T018 if any loss observed since the last check was not finite."""
        if self._buffer is None or not self._rows:
            return
        bad = torch.isfinite(self._buffer[: self._rows]).logical_not().reshape(-1)
        stages, self._rows = self._buffer.shape[1], 0
        first = int(torch.where(bad.any(), bad.long().argmax(), -1))  # the one sync
        if first < 0:
            return
        row, index = divmod(first, stages)
        fail(
            "T018",
            f"the loss of stage {self.first_stage + index} became NaN or infinite at step "
            f"{self._first_step + row + 1}; training stopped without checkpointing this epoch",
            help="lower --lr, use --amp off or bf16 instead of fp16, or check the data for "
            "NaN values",
        )


def distinct(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Parameters in order, each once (an optimizer refuses duplicates)."""
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
