"""`fill_grad`: per-stage gradients combined into `.grad`, for any torch optimizer.

Cost model (see docs/training.md and docs/performance.md): one `autograd.grad` per stage,
restricted to that stage's parameters (so only D_i is traversed when the losses were computed
stage-wise). Each stage's gradient is copied into one row of a flat (n, D) matrix by one
`_chunk_cat` per contiguous run of columns (see `layout`), the float64 Gram matrix is one matmul
per column chunk, and the combination `.grad[p] = Σ_i c_i g_i[p]` is a few ops per membership
pattern's column range, written into one buffer whose views are the parameters' `.grad` (with
their parameters' strides, channels_last included). The number of ops per step therefore does
not grow with the number of parameter tensors, and the only host-device synchronisation is the
one transfer of the Gram matrix that the coefficients need (none at all for ``sgd``,
``sgd-sum`` and ``greedy``).

Parameters that are views of one flat tensor (the weight bank's, on a GPU) can hand their
gradients over as one flat vector instead of one tensor each (`FlatGradients`): their columns
are then filled by one gather per stage, and the backward pass makes no tensor per parameter.
"""

from __future__ import annotations

import contextlib
import math
import operator
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from nestdsl.memory_order import flatten
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


class FlatGradients(Protocol):
    """Parameters whose gradients a backward pass can deliver as one flat vector (what
    ``NestedNet.bank`` does): cheaper than a tensor per parameter when there are hundreds."""

    def flat_parameters(self) -> Sequence[Tensor]:
        """The parameters, in the order their entries follow each other in the flat vector
        (each parameter's entries in its memory order)."""
        ...

    def capturing(self) -> AbstractContextManager[list[Tensor]]:
        """Within the block, backward passes append the parameters' gradient as one flat
        vector to the yielded list and give the parameters themselves none (the list stays
        empty when no backward went through the flat tensor)."""
        ...


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


class PendingDirection(Protocol):
    """A step's backward passes, done; `finish` writes the direction into `.grad` (reading
    what the host needs from the device first) and reports it."""

    def finish(self) -> GradReport: ...


@dataclass(frozen=True)
class _Written:
    """Strategies that need nothing from the host: `.grad` already holds the direction."""

    report: GradReport

    def finish(self) -> GradReport:
        return self.report


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
    capture: FlatGradients | None = None,
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

    `capture` (e.g. ``net.bank``): parameters whose gradients the backward passes may deliver
    as one flat vector; the result is the same, with less work per parameter. The `.grad`
    tensors written by the per-task strategies (and the captured ones of ``sgd``) are views of
    one buffer that the next call overwrites (as DDP's ``gradient_as_bucket_view``): copy one
    to keep it across steps.

    This is ``stage_backward(...).finish()``.
    """
    return stage_backward(
        losses,
        stage_params,
        strategy,
        priority,
        importances=importances,
        norm_constant=norm_constant,
        active_stage=active_stage,
        reduce=reduce,
        loss_scale=loss_scale,
        capture=capture,
    ).finish()


def stage_backward(
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
    capture: FlatGradients | None = None,
) -> PendingDirection:
    """`fill_grad`'s device work: the backward passes, and for the per-task strategies each
    stage's gradient in a row of one matrix and their Gram matrix. `finish()` on the result
    does the rest (the host reads the Gram matrix, computes the coefficients and writes
    `.grad`) and returns the report.

    Nothing in here reads a device value on the host, so a CUDA graph can record it
    (``nestdsl.train.graphed``); after each replay, which recomputes the same tensors in place,
    ``finish()`` combines the new gradients.
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
    layout = _layout(stage_params, capture)
    if options.strategy == "greedy":
        return _greedy(losses, layout, active_stage, reduce)
    if options.strategy in ONE_PASS:
        return _sgd(losses, layout, options, reduce, capture)
    options = replace(options, dims=tuple(layout.dims))
    return _per_task_rows(losses, layout, options, reduce, loss_scale, capture)


_UNCAPTURED: dict[object, StageLayout] = {}
"""The layout of the last call without `capture` (one: it holds its parameters alive)."""

_CAPTURED: weakref.WeakKeyDictionary[FlatGradients, dict[object, StageLayout]] = (
    weakref.WeakKeyDictionary()
)
"""Layouts per capture object (a network's bank), dropped with it: a process that trains
one network after another keeps none of the earlier ones alive."""

_LAYOUTS_PER_CAPTURE = 4
"""Enough for the phases of one training (greedy: one stage list per phase) and for a
benchmark alternating strategies."""


def _layout(
    stage_params: Sequence[Sequence[torch.nn.Parameter]], capture: FlatGradients | None
) -> StageLayout:
    """The layout of an earlier call when the stage lists (with their frozen flags) and the
    captured parameters (where they lie in memory) are the same.

    A training loop passes the same lists every step; building the layout is a Python loop over
    every parameter, a fixed per-step cost that the cache removes, and the key is built by
    ``map`` at C speed. A captured parameter given a new layout gets new memory (the bank
    reties), and with it a new layout of its columns; other parameters' columns follow the
    memory order they had when the layout was built, which stays consistent if that changes.
    A cached layout holds its parameters, so their ids cannot be reused while it is cached.
    """
    captured = capture.flat_parameters() if capture is not None else ()
    key = (
        tuple(tuple(map(id, group)) for group in stage_params),
        tuple(tuple(map(_REQUIRES_GRAD, group)) for group in stage_params),
        tuple(map(Tensor.data_ptr, captured)),
    )
    cache = _UNCAPTURED if capture is None else _CAPTURED.setdefault(capture, {})
    layout = cache.get(key)
    if layout is None:
        layout = StageLayout.build(stage_params, captured)
        if len(cache) >= (1 if capture is None else _LAYOUTS_PER_CAPTURE):
            del cache[next(iter(cache))]
        cache[key] = layout
    return layout


_REQUIRES_GRAD = operator.attrgetter("requires_grad")


# --- per-task gradients, combined -------------------------------------------------------------


def _per_task_rows(
    losses: Sequence[Tensor],
    layout: StageLayout,
    options: CombineOptions,
    reduce: Reduce | None,
    loss_scale: Tensor | None,
    capture: FlatGradients | None,
) -> _Rows:
    """Every strategy of the table: per-stage backward into flat rows, and their Gram matrix.

    Each stage's gradient lives only until it is copied into its row, so the step holds the
    (n, D) rows and one direction, not n per-parameter gradients besides.
    """
    n = len(losses)
    rows = None  # (n, D) in the gradients' dtype (autograd gives each its param's dtype)
    if layout.params:
        like = layout.params[0]
        rows = torch.zeros(n, layout.width, dtype=layout.grad_dtype, device=like.device)
    for i in range(n):
        if rows is None or not losses[i].requires_grad:
            continue
        found, flat = _stage_grads(losses[i], layout.stages[i], i < n - 1, capture)
        _fill_row(rows[i], found, flat, layout, i)
        if reduce is not None:
            _reduce_row(rows[i], layout, i, reduce)
    if reduce is not None and rows is not None and isinstance(reduce, Pending):
        reduce.wait()
    gram = None if rows is None else _gram(rows)
    return _Rows(layout, options, rows, gram, loss_scale)


@dataclass(frozen=True)
class _Rows:
    """Per-stage gradients as rows of one (n, D) matrix and their (n, n) Gram matrix, on the
    device. `finish` reads nothing but these tensors, so it combines whatever they hold when
    it is called (after a CUDA graph replayed `_per_task_rows` into them, the new step's)."""

    layout: StageLayout
    options: CombineOptions
    rows: Tensor | None
    gram: Tensor | None
    loss_scale: Tensor | None

    def finish(self) -> GradReport:
        """The Gram matrix to the host (the step's one sync), the coefficients, the write."""
        layout, options, rows = self.layout, self.options, self.rows
        n = len(layout.stages)
        gram = _on_host(self.gram, n, self.loss_scale)
        norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(n)]
        if not all(math.isfinite(v) for row in gram for v in row):
            # Overflow (e.g. fp16 with a GradScaler): make every .grad non-finite so the scaler
            # (or the caller) sees it, instead of silently dropping the overflowing stage.
            for p in layout.params:
                p.grad = torch.full_like(p, math.nan)
            return GradReport(options.strategy, [math.nan] * n, [], norms, nonfinite=True)
        dtype = rows.dtype if rows is not None else torch.float32
        coefficients = COMBINATIONS[options.strategy](gram, options, dependence_rtol(dtype))
        _write(layout, rows, coefficients)
        return GradReport(
            options.strategy,
            list(coefficients.weights),
            [i + 1 for i in coefficients.skipped],
            norms,
        )


def _stage_grads(
    loss: Tensor, params: list[torch.nn.Parameter], retain: bool, capture: FlatGradients | None
) -> tuple[list[Tensor | None], Tensor | None]:
    """One backward pass of one stage's loss into that stage's parameters only: their
    gradients (None where it does not reach them), and the captured params' gradients as one
    flat vector when `capture` took them over in this pass (None otherwise)."""
    if not params:
        return [], None
    with capture.capturing() if capture is not None else contextlib.nullcontext([]) as sink:
        found = torch.autograd.grad(
            loss, params, retain_graph=retain, allow_unused=True, materialize_grads=False
        )
    flat = None if not sink else sink[0] if len(sink) == 1 else torch.stack(sink).sum(0)
    return list(found), flat


def _fill_row(
    row: Tensor, found: list[Tensor | None], flat: Tensor | None, layout: StageLayout, stage: int
) -> None:
    """Copy one stage's gradient into its columns of the zeroed `row` (D,): one gather of the
    flat vector for the captured columns (those outside the stage zeroed), one op per run of
    reached parameters else (columns of parameters the backward did not reach stay zero)."""
    captured = layout.captured
    if flat is not None:
        index = layout.gather_index(row.device)
        torch.index_select(_as(flat, row.dtype), 0, index, out=row[:captured])
        for start, stop in layout.blanks[stage]:
            row[start:stop].zero_()
    lasts, sizes = layout.stage_last[stage], layout.stage_sizes[stage]
    for run in layout.runs[stage]:
        add = flat is not None and run.start < captured  # a param reached both ways
        begin = at = run.start
        pieces: list[Tensor] = []
        for slot in run.slots:
            g = found[slot]
            if g is None:
                _put(row, begin, at, pieces, add)
                pieces, begin = [], at + sizes[slot]
            else:
                g = _as(g, row.dtype)
                pieces.append(flatten(g, True) if slot in lasts else g)
            at += sizes[slot]
        _put(row, begin, at, pieces, add)


def _put(row: Tensor, start: int, stop: int, pieces: list[Tensor], add: bool) -> None:
    """Columns [start, stop) of `row` from `pieces` in one op (`_chunk_cat` flattens them)."""
    if not pieces:
        return
    target = row[start:stop]
    if add:
        target.add_(torch.cat([g.reshape(-1) for g in pieces]))
    else:
        torch._chunk_cat(pieces, 0, 1, out=target.view(1, -1))


def _reduce_row(row: Tensor, layout: StageLayout, stage: int, reduce: Reduce) -> None:
    """Reduce the columns a stage fills (not the zero padding), in place where `reduce` is."""
    for run in layout.runs[stage]:
        part = row[run.start : run.stop]
        reduced = reduce(part)
        if reduced is not part:
            part.copy_(reduced)


def unflatten(flat: Tensor, params: Sequence[torch.nn.Parameter]) -> list[Tensor]:
    """Split a flat vector (params concatenated in logical order) into tensors shaped and
    strided like `params`, in `flat`'s dtype."""
    parts = torch.split_with_sizes(flat, [p.numel() for p in params])
    out = [torch.empty_like(p, dtype=flat.dtype) for p in params]
    torch._foreach_copy_(out, [part.view(p.shape) for part, p in zip(parts, params, strict=True)])
    return out


def _gram(rows: Tensor) -> Tensor:
    """G = rows rowsᵀ (n, n) in float64, on the rows' device."""
    n = rows.shape[0]
    gram = torch.zeros(n, n, dtype=torch.float64, device=rows.device)  # (n, n)
    for lo in range(0, max(rows.shape[1], 1), GRAM_CHUNK):
        block = rows[:, lo : lo + GRAM_CHUNK].to(torch.float64)  # (n, ≤ GRAM_CHUNK)
        gram.addmm_(block, block.T)
    return gram


def _on_host(gram: Tensor | None, n: int, loss_scale: Tensor | None) -> Matrix:
    """The Gram matrix as host floats, in the step's one sync (zeros without parameters).

    With a loss scale S the rows hold S g_i; S travels in the same transfer and G is divided
    by S², so the coefficients are those of the true gradients.
    """
    if gram is None:
        return [[0.0] * n for _ in range(n)]
    # copy=True: the coefficient math never aliases device-side memory, and on a CPU-only
    # machine the transfer is still one visible op (what nestdsl.profiling counts as a sync).
    if loss_scale is None:
        host: list[float] = gram.reshape(-1).to("cpu", copy=True).tolist()
        return [host[i * n : (i + 1) * n] for i in range(n)]
    scale = loss_scale.detach().reshape(1).to(device=gram.device, dtype=torch.float64)
    packed = torch.cat([gram.reshape(-1), scale]).to("cpu", copy=True).tolist()  # n² + 1
    square = packed[-1] * packed[-1]
    return [[v / square for v in packed[i * n : (i + 1) * n]] for i in range(n)]


def _write(layout: StageLayout, rows: Tensor | None, coefficients: Coefficients) -> None:
    """`.grad[p] = Σ_i c_i g_i[p]`: one multiply-add per stage over every column at once (a
    stage's row is zero outside its params), NormSGD's per-membership average one multiply
    by a per-column scale; written into one buffer whose views become the `.grad`s.

    Sums run in at least float32 (float64 for coefficients beyond the float32 range) and are
    stored in the params' dtype.
    """
    if rows is None:  # no params
        return
    views = layout.grad_views(rows.device, layout.grad_dtype)
    importances = coefficients.importances
    weights = list(coefficients.weights)
    if importances is not None:  # NormSGD: k_i s_i here, 1 / Σ_{i ∈ members} k_i below
        weights = [k * s for k, s in zip(importances, weights, strict=True)]
    terms = [(i, w) for i, w in enumerate(weights) if w != 0.0]
    largest = max((abs(w) for _, w in terms), default=0.0)
    wide = largest > _FLOAT32_SAFE or rows.dtype == torch.float64
    _combine_into(views.buffer, rows, terms, torch.float64 if wide else torch.float32)
    if importances is not None:
        views.buffer.mul_(layout.average_scale(importances, rows.device, layout.grad_dtype))
    for p, view in zip(layout.params, views.views, strict=True):
        p.grad = view if view.dtype == p.dtype else view.to(p.dtype)


def _combine_into(
    out: Tensor, rows: Tensor, terms: list[tuple[int, float]], work: torch.dtype
) -> None:
    """out = Σ w rows[i] over `terms` ((n, D) rows, (D,) out), computed in `work` precision."""
    if not terms:
        out.zero_()
        return
    direct = out.dtype == work and rows.dtype == work
    parts = (rows if rows.dtype == work else rows.to(work)).unbind(0)
    acc = out if direct else torch.empty_like(out, dtype=work)
    torch.mul(parts[terms[0][0]], terms[0][1], out=acc)
    for i, w in terms[1:]:
        acc.add_(parts[i], alpha=w)
    if acc is not out:
        out.copy_(acc)


def _as(g: Tensor, dtype: torch.dtype) -> Tensor:
    """`g` in `dtype`, without a call into torch when it already is (the common case: this
    runs once per parameter and stage every step)."""
    return g if g.dtype == dtype else g.to(dtype)


# --- single-backward strategies ---------------------------------------------------------------


def _greedy(
    losses: Sequence[Tensor],
    layout: StageLayout,
    active_stage: int | None,
    reduce: Reduce | None,
) -> _Written:
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
    loss = losses[active_stage - 1]
    found = _stage_grads(loss, new, False, None)[0] if loss.requires_grad else [None] * len(new)
    pieces = [torch.zeros_like(p) if g is None else g for p, g in zip(new, found, strict=True)]
    if reduce is not None and new:
        pieces = _reduced(pieces, new, reduce)
    for p, g in zip(new, pieces, strict=True):
        p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
    weights = [1.0 if i == active_stage - 1 else 0.0 for i in range(n)]
    return _Written(GradReport("greedy", weights, [], [], active_stage=active_stage))


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
    capture: FlatGradients | None,
) -> _Written:
    """Eq. 1 with a single backward pass of Σ w_i L_i into the stage parameters (the
    captured ones' gradients gathered from their flat vector into views of one buffer)."""
    weights = ONE_PASS[options.strategy](options.importances)
    for p in layout.params:
        p.grad = None
    terms = [w * loss for w, loss in zip(weights, losses, strict=True) if loss.requires_grad]
    if terms and layout.params:
        total = torch.stack([t.reshape(()) for t in terms]).sum()
        with capture.capturing() if capture is not None else contextlib.nullcontext([]) as sink:
            torch.autograd.backward(total, inputs=list(layout.params))
        if sink:
            _give_captured(layout, sink[0] if len(sink) == 1 else torch.stack(sink).sum(0))
    for p in layout.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if reduce is not None and layout.params:
        grads = [p.grad for p in layout.params if p.grad is not None]
        for p, g in zip(layout.params, _reduced(grads, layout.params, reduce), strict=True):
            p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
    return _Written(GradReport(options.strategy, weights, [], []))


def _give_captured(layout: StageLayout, flat: Tensor) -> None:
    """The captured params' `.grad` from their flat gradient: one gather into the columns
    they have in the direction's buffer, and their views of it."""
    views = layout.grad_views(flat.device, layout.grad_dtype)
    block = views.buffer[: layout.captured]
    torch.index_select(_as(flat, block.dtype), 0, layout.gather_index(flat.device), out=block)
    for p, start, view in zip(layout.params, layout.columns, views.views, strict=True):
        if start < layout.captured:
            p.grad = view if view.dtype == p.dtype else view.to(p.dtype)


def _reduced(grads: list[Tensor], params: list[torch.nn.Parameter], reduce: Reduce) -> list[Tensor]:
    """Flatten gradients into one vector (one op), reduce it, and split it back (strides kept)."""
    flat = torch._chunk_cat(grads, 0, 1).view(-1)  # (Σ numel,)
    out = reduce(flat)
    if isinstance(reduce, Pending):
        reduce.wait()
    return unflatten(out, params)
