"""One optimisation step per training mode, all ending in ``fill_grad`` + ``optimizer.step``.

Modes and how they compute the stage losses:

- ``joint`` (strategy ``sgd``): one joint ``net(x)``; fill_grad does one backward of
  Σ k_i L_i / Σ k_i.
- ``anytime`` (sgd-norm, osgd, osgd-norm, mtl:*): losses from ``net.anytime(x)``, so the
  backward of L_k traverses D_k only; fill_grad combines the per-task gradients.
- ``greedy`` (phase k of Algorithm 1): only stages 1..k run, stages 1..k-1 in eval mode
  (frozen: their BatchNorm normalizes with, and keeps, its running statistics); L_k flows
  into w_k \\ w_(k-1).
- ``standalone`` (D_k alone with ``--standalone k``, or the Oracle network with ``--oracle k``):
  one output, plain cross-entropy.

fp16 loss scaling with a gradient-combining optimizer: the losses are multiplied by the
GradScaler's scale S so that small fp16 gradients survive the backward pass; fill_grad's
``reduce`` hook divides every per-task gradient by S *before* the combination (norms and
Gram–Schmidt then see true gradients — NormSGD's normalization is not scale-equivariant,
so combining scaled gradients would be wrong), and the combined ``.grad`` is multiplied by S
again so that ``scaler.step`` can unscale it, detect inf/NaN (an overflow anywhere poisons
the combination, which then is non-finite too) and skip the step as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.evaluate import stage_outputs
from nestdsl.optim import fill_grad
from nestdsl.train.config import TrainConfig
from nestdsl.train.devices import Runtime

Reduce = Callable[[Tensor], Tensor]


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

    @property
    def stages(self) -> int:
        return len(self.stage_params)


def mode_of(config: TrainConfig) -> str:
    """Which forward/step a config trains with."""
    if config.standalone is not None or config.oracle is not None:
        return "standalone"
    return {"sgd": "joint", "sgd-sum": "joint", "greedy": "greedy"}.get(config.strategy, "anytime")


def _reduce_with_scale(reduce: Reduce | None, scale: float) -> Reduce:
    def unscaled(flat: Tensor) -> Tensor:
        out = reduce(flat) if reduce is not None else flat
        return out / scale

    return unscaled


def train_step(plan: StepPlan, runtime: Runtime, images: Tensor, labels: Tensor) -> list[Tensor]:
    """Forward, combine the stage gradients into ``.grad``, step; return the detached losses."""
    with runtime.autocast():
        outputs = FORWARDS[plan.mode](plan.model, images, plan.stages)
        losses = [F.cross_entropy(out.float(), labels) for out in outputs]
    weighted = [loss * plan.loss_scale for loss in losses] if plan.loss_scale != 1 else losses
    scaler = plan.scaler
    scale: float | None = None
    if scaler is not None:
        losses_in: list[Tensor] = [scaler.scale(loss) for loss in weighted]
        scale = float(scaler.get_scale())
    else:
        losses_in = weighted
    fill_grad(
        losses_in,
        plan.stage_params,
        plan.strategy,
        plan.priority,
        importances=plan.importances,
        norm_constant=plan.norm_constant,
        active_stage=plan.active_stage,
        reduce=_reduce_with_scale(plan.reduce, scale) if scale is not None else plan.reduce,
    )
    if scaler is not None and scale is not None:
        _rescale(plan.optimizer, scale)
        scaler.step(plan.optimizer)
        scaler.update()
    else:
        plan.optimizer.step()
    return [loss.detach() for loss in losses]


def _rescale(optimizer: torch.optim.Optimizer, scale: float) -> None:
    """Put the scale back on the combined direction so the GradScaler can take it off."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    present = [g for g in grads if g is not None]
    if present:
        torch._foreach_mul_(present, scale)


def distinct(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Parameters in order, each once (an optimizer refuses duplicates)."""
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out
