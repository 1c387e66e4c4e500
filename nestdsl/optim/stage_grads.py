"""`fill_grad`: per-stage gradients combined into `.grad`, for any torch optimizer.

Cost model (see docs/training.md and docs/performance.md): one `autograd.grad` per stage,
restricted to that stage's parameters (so only D_i is traversed when the losses were computed
stage-wise). Each stage's gradient is copied into one row of a flat (n, D) matrix by one
`_chunk_cat` per contiguous run of columns (see `layout`), the float64 Gram matrix is one matmul
per column chunk, and the combination `.grad[p] = Σ_i c_i g_i[p]` is written with
`torch._foreach_*` ops per membership pattern. The number of ops per step therefore does not
grow with the number of parameter tensors, the written gradients keep their parameters'
strides (channels_last included), and the only host-device synchronisation is the one transfer
of the Gram matrix that the coefficients need (none at all for ``sgd``, ``sgd-sum`` and ``greedy``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from nestdsl.optim.coefficients import (
    COMBINATIONS,
    Coefficients,
    Matrix,
    Vector,
    dependence_rtol,
    mean_weights,
    sum_weights,
)
from nestdsl.optim.layout import StageLayout
from nestdsl.optim.strategies import CombineOptions, resolve_options

Reduce = Callable[[Tensor], Tensor]
"""Averages one flattened gradient over data-parallel ranks (identity in one process)."""

GRAM_CHUNK = 1 << 22
"""Columns per float64 Gram product: bounds the float64 copy to n · 32 MiB whatever D is."""

_FLOAT32_SAFE = 1e30
"""Coefficients larger than this (NormSGD's 1/‖g‖ of a tiny gradient) are applied in float64."""


@runtime_checkable
class Pending(Protocol):
    """A `Reduce` that works asynchronously in place; `wait` completes every started call."""

    def wait(self) -> None: ...


@dataclass(frozen=True)
class GradReport:
    """What `fill_grad` did, as plain Python values (no tensor, so reading it never syncs).

    coefficients  the weights c_i of Σ c_i g_i (NormSGD: the normalization scales s_i)
    skipped       1-based stages left out (zero, non-finite or dependent gradients)
    grad_norms    ‖g_i‖ per stage when per-stage gradients were combined; empty for ``sgd``,
                  ``sgd-sum`` and ``greedy``, which never form them
    nonfinite     the gradients overflowed: every `.grad` was made NaN so a GradScaler skips
    """

    strategy: str
    coefficients: list[float]
    skipped: list[int]
    grad_norms: list[float]
    active_stage: int | None = None
    nonfinite: bool = False


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
    loss_scale: Tensor | None = None,
) -> GradReport:
    """Back-propagate the stage losses and write the strategy's direction into `.grad`.

    `losses[i]` is the loss of stage i+1 and `stage_params[i]` the parameters of D_{i+1}
    (nested lists; parameters are matched by identity, frozen ones ignored). Every parameter of
    some stage gets its `.grad` overwritten (zeros where the direction is zero); parameters
    outside every stage are untouched. ``greedy`` needs `active_stage=k` (1-based) and fills
    only w_k \\ w_(k-1), setting the other stage parameters' `.grad` to None so the optimizer
    skips them. `reduce` (e.g. an all-reduce mean) is applied to each stage's flattened
    gradient right after its backward, before combination; a `Pending` reduce may run while the
    next stage's backward does. The computation graph is freed afterwards.

    `loss_scale` (a GradScaler's scale S as a 0-d tensor, when the losses were multiplied by
    it): the coefficients are computed for the true gradients g_i = (S g_i) / S and `.grad`
    receives S times the direction, which is what `scaler.step` unscales.
    """
    n = len(losses)
    if n == 0 or len(stage_params) != n:
        raise ValueError(
            f"need one loss per stage and one parameter list per stage, got {n} losses and "
            f"{len(stage_params)} parameter lists"
        )
    options = resolve_options(strategy, n, priority, importances, norm_constant)
    if options.strategy != "greedy" and active_stage is not None:
        raise ValueError(f"active_stage is only meaningful for 'greedy', not {options.strategy!r}")
    layout = _layout(stage_params)
    if options.strategy == "greedy":
        return _greedy(losses, layout, active_stage, reduce)
    if options.strategy in ONE_PASS:
        return _sgd(losses, layout, options, reduce)
    return _combined(losses, layout, replace(options, dims=tuple(layout.dims)), reduce, loss_scale)


_CACHE: list[tuple[tuple[tuple[tuple[int, bool], ...], ...], StageLayout]] = []


def _layout(stage_params: Sequence[Sequence[torch.nn.Parameter]]) -> StageLayout:
    """The layout of the last call when the stage lists (and their frozen flags) are the same.

    A training loop passes the same lists every step; building the layout is a Python loop over
    every parameter, a fixed per-step cost that the cache removes. The cached layout holds its
    parameters, so their ids cannot be reused by others while it is cached.
    """
    key = tuple(tuple((id(p), p.requires_grad) for p in group) for group in stage_params)
    if _CACHE and _CACHE[0][0] == key:
        return _CACHE[0][1]
    layout = StageLayout.build(stage_params)
    _CACHE[:] = [(key, layout)]
    return layout


# --- per-task gradients, combined -------------------------------------------------------------


def _combined(
    losses: Sequence[Tensor],
    layout: StageLayout,
    options: CombineOptions,
    reduce: Reduce | None,
    loss_scale: Tensor | None,
) -> GradReport:
    """Every strategy of the table: per-stage backward, flat rows, Gram, foreach writes."""
    n = len(losses)
    grads: list[list[Tensor] | None] = []
    rows: Tensor | None = None  # (n, D), allocated once the gradients' dtype is known
    for i in range(n):
        found = _stage_grads(losses[i], layout.stages[i], retain=i < n - 1)
        grads.append(found)
        if not found:
            continue
        if rows is None:
            rows = torch.zeros(n, layout.width, dtype=found[0].dtype, device=found[0].device)
        _fill_row(rows[i], found, layout, i)
        if reduce is not None:
            _reduce_row(rows[i], layout, i, reduce)
    if reduce is not None and rows is not None:
        if isinstance(reduce, Pending):
            reduce.wait()
        grads = [
            g if g is None else _rows_to_grads(rows[i], layout, i) for i, g in enumerate(grads)
        ]
    gram = _host_gram(rows, n, loss_scale)
    norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(n)]
    if not all(math.isfinite(v) for row in gram for v in row):
        # Overflow (e.g. fp16 with a GradScaler): make every .grad non-finite so the scaler
        # (or the caller) sees it, instead of silently dropping the overflowing stage.
        for p in layout.params:
            p.grad = torch.full_like(p, math.nan)
        return GradReport(options.strategy, [math.nan] * n, [], norms, nonfinite=True)
    dtype = rows.dtype if rows is not None else torch.float32
    coefficients = COMBINATIONS[options.strategy](gram, options, dependence_rtol(dtype))
    _write(layout, grads, coefficients)
    return GradReport(
        options.strategy,
        list(coefficients.weights),
        [i + 1 for i in coefficients.skipped],
        norms,
    )


def _stage_grads(
    loss: Tensor, params: list[torch.nn.Parameter], retain: bool
) -> list[Tensor] | None:
    """One backward pass of one stage's loss into that stage's parameters only (zeros for
    parameters it does not reach); None when the loss carries no graph at all."""
    if not loss.requires_grad:
        return None
    if not params:
        return []
    found = torch.autograd.grad(
        loss, params, retain_graph=retain, allow_unused=True, materialize_grads=True
    )
    return list(found)


def _fill_row(row: Tensor, grads: list[Tensor], layout: StageLayout, stage: int) -> None:
    """Copy one stage's gradient into its columns of `row` (D,): one op per contiguous run."""
    for run in layout.runs[stage]:
        pieces = [_as(grads[slot], row.dtype) for slot in run.slots]
        torch._chunk_cat(pieces, 0, 1, out=row[run.start : run.stop].view(1, -1))


def _reduce_row(row: Tensor, layout: StageLayout, stage: int, reduce: Reduce) -> None:
    """Reduce the columns a stage fills (not the zero padding), in place where `reduce` is."""
    for run in layout.runs[stage]:
        part = row[run.start : run.stop]
        reduced = reduce(part)
        if reduced is not part:
            part.copy_(reduced)


def _rows_to_grads(row: Tensor, layout: StageLayout, stage: int) -> list[Tensor]:
    """The inverse of `_fill_row` after a reduction: per-parameter tensors with the
    parameters' own strides (channels_last stays channels_last)."""
    params = layout.stages[stage]
    out: list[Tensor] = [torch.empty(0)] * len(params)
    for run in layout.runs[stage]:
        mine = [params[slot] for slot in run.slots]
        for slot, g in zip(run.slots, unflatten(row[run.start : run.stop], mine), strict=True):
            out[slot] = g
    return out


def unflatten(flat: Tensor, params: Sequence[torch.nn.Parameter]) -> list[Tensor]:
    """Split a flat vector (params concatenated in logical order) into tensors shaped and
    strided like `params`, in `flat`'s dtype."""
    parts = torch.split_with_sizes(flat, [p.numel() for p in params])
    out = [torch.empty_like(p, dtype=flat.dtype) for p in params]
    torch._foreach_copy_(out, [part.view(p.shape) for part, p in zip(parts, params, strict=True)])
    return out


def _host_gram(rows: Tensor | None, n: int, loss_scale: Tensor | None) -> Matrix:
    """G = rows rowsᵀ (n, n) in float64, brought to the host in the step's one sync.

    With a loss scale S the rows hold S g_i; S travels in the same transfer and G is divided
    by S², so the coefficients are those of the true gradients.
    """
    if rows is None:
        return [[0.0] * n for _ in range(n)]
    gram = torch.zeros(n, n, dtype=torch.float64, device=rows.device)  # (n, n)
    for lo in range(0, max(rows.shape[1], 1), GRAM_CHUNK):
        block = rows[:, lo : lo + GRAM_CHUNK].to(torch.float64)  # (n, ≤ GRAM_CHUNK)
        gram.addmm_(block, block.T)
    # copy=True: the coefficient math never aliases device-side memory, and on a CPU-only
    # machine the transfer is still one visible op (what nestdsl.profiling counts as a sync).
    if loss_scale is None:
        host: list[float] = gram.reshape(-1).to("cpu", copy=True).tolist()
        return [host[i * n : (i + 1) * n] for i in range(n)]
    scale = loss_scale.detach().reshape(1).to(device=rows.device, dtype=torch.float64)
    packed = torch.cat([gram.reshape(-1), scale]).to("cpu", copy=True).tolist()  # n² + 1
    square = packed[-1] * packed[-1]
    return [[v / square for v in packed[i * n : (i + 1) * n]] for i in range(n)]


def _write(
    layout: StageLayout, grads: list[list[Tensor] | None], coefficients: Coefficients
) -> None:
    """`.grad[p] = Σ_i c_i g_i[p]` with foreach ops, one group per membership pattern.

    Sums run in at least float32 (float64 for coefficients beyond the float32 range) and are
    stored in each parameter's dtype.
    """
    for members, group in layout.patterns.items():
        params = [layout.params[at] for at in group]
        weights = coefficients.for_members(members)
        terms = [(i, weights[i]) for i in members if weights[i] != 0.0 and grads[i] is not None]
        if not terms:
            for p in params:
                p.grad = torch.zeros_like(p)
            continue
        largest = max(abs(w) for _, w in terms)
        work = torch.float64 if largest > _FLOAT32_SAFE else torch.float32
        slots = layout.pattern_slots[members]
        pieces = [_pieces(grads[i], slots[i], work) for i, _ in terms]
        out = torch._foreach_mul(pieces[0], terms[0][1])
        for piece, (_, w) in zip(pieces[1:], terms[1:], strict=True):
            torch._foreach_add_(out, piece, alpha=w)
        for p, g in zip(params, out, strict=True):
            p.grad = g if g.dtype == p.dtype else g.to(p.dtype)


def _pieces(found: list[Tensor] | None, slots: list[int], work: torch.dtype) -> list[Tensor]:
    """One stage's gradient of the params at `slots`, in at least the `work` precision."""
    assert found is not None
    pieces = [found[slot] for slot in slots]
    if all(g.dtype == work for g in pieces):
        return pieces
    return [g if _bits(g.dtype) >= _bits(work) else g.to(work) for g in pieces]


def _as(g: Tensor, dtype: torch.dtype) -> Tensor:
    """`g` in `dtype`, without a call into torch when it already is (the common case: this
    runs once per parameter and stage every step)."""
    return g if g.dtype == dtype else g.to(dtype)


def _bits(dtype: torch.dtype) -> int:
    """Width of a floating dtype, read from finfo (no dispatched op, unlike promote_types)."""
    return torch.finfo(dtype).bits


# --- single-backward strategies ---------------------------------------------------------------


def _greedy(
    losses: Sequence[Tensor],
    layout: StageLayout,
    active_stage: int | None,
    reduce: Reduce | None,
) -> GradReport:
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
    found = _stage_grads(losses[active_stage - 1], new, retain=False)
    pieces = found if found is not None else [torch.zeros_like(p) for p in new]
    if reduce is not None and new:
        pieces = _reduced(pieces, new, reduce)
    for p, g in zip(new, pieces, strict=True):
        p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
    weights = [1.0 if i == active_stage - 1 else 0.0 for i in range(n)]
    return GradReport("greedy", weights, [], [], active_stage=active_stage)


ONE_PASS: dict[str, Callable[[Sequence[float]], Vector]] = {
    "sgd": mean_weights,
    "sgd-sum": sum_weights,
}
"""Strategies whose direction is the gradient of one weighted sum of the losses: a single
backward pass, no per-stage gradients, and their weights from the importances."""


def _sgd(
    losses: Sequence[Tensor],
    layout: StageLayout,
    options: CombineOptions,
    reduce: Reduce | None,
) -> GradReport:
    """Eq. 1 with a single backward pass of Σ w_i L_i into the stage parameters."""
    weights = ONE_PASS[options.strategy](options.importances)
    for p in layout.params:
        p.grad = None
    terms = [w * loss for w, loss in zip(weights, losses, strict=True) if loss.requires_grad]
    if terms and layout.params:
        total = torch.stack([t.reshape(()) for t in terms]).sum()
        torch.autograd.backward(total, inputs=list(layout.params))
    for p in layout.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if reduce is not None and layout.params:
        grads = [p.grad for p in layout.params if p.grad is not None]
        for p, g in zip(layout.params, _reduced(grads, layout.params, reduce), strict=True):
            p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
    return GradReport(options.strategy, weights, [], [])


def _reduced(grads: list[Tensor], params: list[torch.nn.Parameter], reduce: Reduce) -> list[Tensor]:
    """Flatten gradients into one vector (one op), reduce it, and split it back (strides kept)."""
    flat = torch._chunk_cat(grads, 0, 1).view(-1)  # (Σ numel,)
    out = reduce(flat)
    if isinstance(reduce, Pending):
        reduce.wait()
    return unflatten(out, params)
