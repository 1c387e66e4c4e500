"""`fill_grad`: one training step's gradient, written into `.grad` for any torch optimizer.

Cost model (see docs/training.md): one `autograd.grad` per stage, each restricted to that
stage's parameters (so only D_i is traversed when the losses were computed stage-wise); the
n×n Gram matrix is accumulated in float64 from per-parameter dot products; the combination
`.grad[p] = Σ_i c_i g_i[p]` is written parameter by parameter. No flattened (n, d) matrix and
no orthogonalized copies are built (only `reduce`, when given, flattens one stage at a time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from nestdsl.optim.coefficients import (
    average_weights,
    mean_weights,
    norm_scales,
    orthogonal_weights,
)
from nestdsl.optim.layout import StageLayout
from nestdsl.optim.mtl import MTL_STRATEGIES, mtl_weights
from nestdsl.optim.strategies import (
    check_norm_constant,
    check_strategy,
    resolve_importances,
    resolve_priority,
)

Reduce = Callable[[Tensor], Tensor]
Pieces = list[Tensor | None]


def fill_grad(
    losses: Sequence[Tensor],
    stage_params: Sequence[Sequence[torch.nn.Parameter]],
    strategy: str = "osgd",
    priority: Sequence[int] | None = None,
    *,
    importances: Sequence[float] | None = None,
    norm_constant: float = 0.5,
    active_stage: int | None = None,
    reduce: Reduce | None = None,
) -> dict[str, Any]:
    """Back-propagate the stage losses and write the strategy's direction into `.grad`.

    `losses[i]` is the loss of stage i+1 and `stage_params[i]` the parameters of D_{i+1}
    (nested lists; parameters are matched by identity, frozen ones ignored). Every parameter of
    some stage gets its `.grad` overwritten (zeros where the direction is zero); parameters
    outside every stage are untouched. ``greedy`` needs `active_stage=k` (1-based) and fills
    only w_k \\ w_(k-1), setting the other stage parameters' `.grad` to None so the optimizer
    skips them. `reduce` (e.g. an all-reduce mean) is applied to each stage's flattened
    gradient before combination. The computation graph is freed afterwards.

    Returns diagnostics as plain Python values: the strategy, per-stage gradient norms (when
    per-stage gradients were computed), the combination coefficients and skipped stages.
    """
    name = check_strategy(strategy)
    n = len(losses)
    if n == 0 or len(stage_params) != n:
        raise ValueError(
            f"need one loss per stage and one parameter list per stage, got {n} losses and "
            f"{len(stage_params)} parameter lists"
        )
    order = resolve_priority(priority, n)
    k = resolve_importances(importances, n)
    c = check_norm_constant(norm_constant)
    if name in MTL_STRATEGIES and (priority is not None or importances is not None):
        raise ValueError(f"strategy {name!r} takes no priority or importances")
    if name != "greedy" and active_stage is not None:
        raise ValueError(f"active_stage is only meaningful for 'greedy', not {name!r}")
    layout = StageLayout.build(stage_params)

    if name == "greedy":
        return _greedy(losses, layout, active_stage, reduce)
    if name == "sgd":
        return _sgd(losses, layout, k, reduce)

    grads = [_stage_grads(losses[i], layout.stages[i], i < n - 1) for i in range(n)]
    if reduce is not None:
        grads = [_reduced(g, group, reduce) for g, group in zip(grads, layout.stages, strict=True)]
    gram = _gram(layout, grads, n)
    info: dict[str, Any] = {"strategy": name, "grad_norms": _norms(gram)}
    if not bool(torch.isfinite(gram).all()):
        # Overflow (e.g. fp16 with a GradScaler): make every .grad non-finite so the scaler
        # (or the caller) sees it, instead of silently dropping the overflowing stage.
        nan = [math.nan] * n
        for at, p in enumerate(layout.params):
            _write(p, _pieces(layout, grads, at), nan)
        info.update(coefficients=nan, skipped=[], nonfinite=True)
        return info

    if name == "sgd-norm":
        scales = norm_scales(gram, layout.dims, c)
        cache: dict[tuple[int, ...], list[float]] = {}
        for at, p in enumerate(layout.params):
            key = tuple(layout.members[at])
            if key not in cache:
                cache[key] = average_weights(scales, k, key).tolist()
            _write(p, _pieces(layout, grads, at), cache[key])
        info["coefficients"] = scales.tolist()
        info["skipped"] = [i + 1 for i in range(n) if float(scales[i]) == 0.0]
        return info

    skipped: list[int] = []
    if name == "osgd":
        weights, skipped = orthogonal_weights(gram, order, k)
    elif name == "osgd-norm":
        weights, skipped = orthogonal_weights(gram, order, k, norm_scales(gram, layout.dims, c))
    else:
        weights = mtl_weights(name, gram)
    as_list = weights.tolist()
    for at, p in enumerate(layout.params):
        _write(p, _pieces(layout, grads, at), as_list)
    info["coefficients"] = as_list
    info["skipped"] = sorted(i + 1 for i in skipped)
    return info


def _stage_grads(loss: Tensor, params: list[torch.nn.Parameter], retain: bool) -> Pieces:
    """One backward pass of one stage's loss into that stage's parameters only."""
    if not params or not loss.requires_grad:
        return [None] * len(params)
    found = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return list(found)


def _reduced(pieces: Pieces, params: list[torch.nn.Parameter], reduce: Reduce) -> Pieces:
    """Flatten one stage's gradient, reduce it (e.g. all-reduce mean), and split it back."""
    if not params:
        return pieces
    dtype = next((g.dtype for g in pieces if g is not None), params[0].dtype)
    flat = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p, dtype=dtype)).reshape(-1)
            for g, p in zip(pieces, params, strict=True)
        ]
    )
    flat = reduce(flat)
    out: Pieces = []
    offset = 0
    for p in params:
        out.append(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def _pieces(layout: StageLayout, grads: list[Pieces], at: int) -> list[tuple[int, Tensor]]:
    """The non-empty gradient pieces of parameter `at`, with their 0-based stage index."""
    found = []
    for stage, slot in zip(layout.members[at], layout.slots[at], strict=True):
        g = grads[stage][slot]
        if g is not None:
            found.append((stage, g))
    return found


def _gram(layout: StageLayout, grads: list[Pieces], n: int) -> Tensor:
    """G = g gᵀ over zero-padded gradients, from per-parameter float64 dot products.

    Blocks are summed on the gradients' device per membership pattern and moved to the CPU
    once at the end, so a step costs one device synchronisation for the whole matrix.
    """
    blocks: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}
    for at in range(len(layout.params)):
        pieces = _pieces(layout, grads, at)
        if not pieces:
            continue
        rows = torch.stack([g.reshape(-1).to(torch.float64) for _, g in pieces])
        key = (tuple(stage for stage, _ in pieces), rows.device)
        block = rows @ rows.T
        blocks[key] = blocks[key] + block if key in blocks else block
    gram = torch.zeros(n, n, dtype=torch.float64)
    for (stages, _), block in blocks.items():
        index = torch.tensor(stages)
        gram[index[:, None], index[None, :]] += block.cpu()
    return gram


def _write(p: torch.nn.Parameter, pieces: list[tuple[int, Tensor]], weights: list[float]) -> None:
    """`.grad[p] = Σ_i w_i g_i[p]`, summed in at least float32, stored in p's dtype."""
    work = torch.promote_types(p.dtype, torch.float32)
    out: Tensor | None = None
    for stage, g in pieces:
        w = weights[stage]
        if w == 0.0:
            continue
        term = g.to(work) * w
        out = term if out is None else out.add_(term)
    p.grad = torch.zeros_like(p) if out is None else out.to(p.dtype)


def _norms(gram: Tensor) -> list[float]:
    return [math.sqrt(max(float(v), 0.0)) for v in gram.diagonal()]


def _greedy(
    losses: Sequence[Tensor],
    layout: StageLayout,
    active_stage: int | None,
    reduce: Reduce | None,
) -> dict[str, Any]:
    """Algorithm 1, one step: L_k into w_k \\ w_(k-1) only; other stage params get no grad."""
    n = len(losses)
    if active_stage is None or isinstance(active_stage, bool) or not 1 <= active_stage <= n:
        raise ValueError(
            f"strategy 'greedy' needs active_stage=k with k in 1..{n} (the stage being "
            f"trained), got {active_stage!r}"
        )
    new = layout.new_in(active_stage - 1)
    fresh = {id(p) for p in new}
    for p in layout.params:
        if id(p) not in fresh:
            p.grad = None
    pieces = _stage_grads(losses[active_stage - 1], new, retain=False)
    if reduce is not None:
        pieces = _reduced(pieces, new, reduce)
    for p, g in zip(new, pieces, strict=True):
        p.grad = torch.zeros_like(p) if g is None else g.to(p.dtype)
    return {
        "strategy": "greedy",
        "active_stage": active_stage,
        "grad_norms": [_total_norm(new)],
        "coefficients": [1.0 if i == active_stage - 1 else 0.0 for i in range(n)],
        "skipped": [],
    }


def _sgd(
    losses: Sequence[Tensor],
    layout: StageLayout,
    k: list[float],
    reduce: Reduce | None,
) -> dict[str, Any]:
    """Eq. 1 with a single backward pass of Σ k_i L_i / Σ k_i into the stage parameters."""
    weights = mean_weights(k).tolist()
    for p in layout.params:
        p.grad = None
    terms = [w * loss for w, loss in zip(weights, losses, strict=True) if loss.requires_grad]
    if terms and layout.params:
        total = torch.stack([t.reshape(()) for t in terms]).sum()
        torch.autograd.backward(total, inputs=list(layout.params))
    for p in layout.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if reduce is not None:
        reduced = _reduced([p.grad for p in layout.params], layout.params, reduce)
        for p, g in zip(layout.params, reduced, strict=True):
            assert g is not None
            p.grad = g.to(p.dtype)
    norm = _total_norm(layout.params)
    return {"strategy": "sgd", "grad_norms": [norm], "coefficients": weights, "skipped": []}


def _total_norm(params: Sequence[torch.nn.Parameter]) -> float:
    """‖.grad‖ over `params` with a single device synchronisation (for logging)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    device = grads[0].device
    squares = [g.detach().to(device=device, dtype=torch.float64).pow(2).sum() for g in grads]
    return math.sqrt(float(torch.stack(squares).sum()))
