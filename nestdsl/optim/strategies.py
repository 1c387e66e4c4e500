"""Strategy names, the options object and its validation, shared by every entry point.

`combine`, `fill_grad` and the trainer's configuration check
(`nestdsl.train.config_checks`) all call `resolve_options`, so they reject exactly the same
inputs with exactly the same messages. A rejection is an `OptionError`: a `ValueError` for
Python callers that also says which option
was wrong (`field`), so the trainer can give it its error code without re-checking anything.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from nestdsl.optim.errors import OptionError
from nestdsl.optim.mtl import MTL_STRATEGIES, torchjd_available

BASE_STRATEGIES: tuple[str, ...] = ("greedy", "sgd", "sgd-norm", "osgd", "osgd-norm")
"""The paper's strategies (§4): always available."""

CONTROLS: tuple[str, ...] = ("sgd-sum",)
"""Controls beside the paper's strategies, always available: ``sgd-sum`` is Eq. 1 on the sum of
the losses instead of their mean, the step size of OSGD, which sums its orthogonalized
gradients."""

NORMALIZING: frozenset[str] = frozenset({"sgd-norm", "osgd-norm"})
"""Strategies that read NormSGD's constant C."""

ORTHOGONALIZING: frozenset[str] = frozenset({"osgd", "osgd-norm"})
"""Strategies whose direction depends on the priority order."""

SINGLE_LOSS: frozenset[str] = frozenset({"greedy", "sgd", "sgd-sum"})
"""Strategies that back-propagate one loss (L_k, or a weighted sum) and never form per-task
gradients; every other strategy takes one gradient per stage and combines them."""

STRATEGIES: tuple[str, ...] = (
    BASE_STRATEGIES + CONTROLS + (MTL_STRATEGIES if torchjd_available() else ())
)
"""Every strategy usable in this environment (torchjd comparators only when installed)."""

GREEDY_MESSAGE = (
    "strategy 'greedy' is stage-wise (Algorithm 1), not a combination of gradients: "
    "train one stage at a time with fill_grad(..., strategy='greedy', active_stage=k), "
    "which back-propagates L_k into the new parameters w_k \\ w_(k-1) only"
)


@dataclass(frozen=True)
class CombineOptions:
    """Everything a strategy's coefficients depend on besides the gradients, validated.

    order        0-based stage indices, highest priority first
    importances  k_i per stage (non-negative, finite, not all zero)
    norm_constant  NormSGD's C
    dims         d_i: the number of scalars of each subnetwork (NormSGD's √d_i)
    """

    strategy: str
    order: tuple[int, ...]
    importances: tuple[float, ...]
    norm_constant: float
    dims: tuple[int, ...]

    @property
    def stages(self) -> int:
        return len(self.order)


def check_strategy(strategy: str) -> str:
    """Return the canonical strategy name or raise an `OptionError` suggesting the closest one.

    The `mtl:*` names are recognised even without torchjd, so that the error can say how to
    install it instead of pretending the name does not exist.
    """
    name = strategy.strip().lower() if isinstance(strategy, str) else strategy
    known = BASE_STRATEGIES + CONTROLS + MTL_STRATEGIES
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=1)
    listing = ", ".join(known)
    raise OptionError(
        "strategy",
        f"unknown training strategy `{strategy}`",
        f"did you mean `{close[0]}`?" if close else f"choose one of: {listing}",
        text=f"unknown training strategy {strategy!r}."
        + (f" Did you mean {close[0]!r}?" if close else "")
        + f" Valid strategies: {listing}",
    )


def resolve_priority(priority: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """Turn a priority (stage numbers 1..n, highest first) into a 0-based processing order."""
    if priority is None:
        return tuple(range(n))
    items = list(priority)
    if len(items) != n or sorted(items) != list(range(1, n + 1)):
        shown = ",".join(map(str, items))
        raise OptionError(
            "priority",
            f"priority {shown} is not a permutation of the stage numbers 1..{n} "
            "(highest priority first)",
        )
    return tuple(int(stage) - 1 for stage in items)


def resolve_importances(importances: Sequence[float] | None, n: int) -> tuple[float, ...]:
    """Validate loss importances k_i (non-negative, finite, not all zero); default all 1."""
    if importances is None:
        return (1.0,) * n
    values = [float(k) for k in importances]
    if len(values) != n or any(not math.isfinite(k) or k < 0 for k in values) or sum(values) <= 0:
        raise OptionError(
            "importances",
            f"importances need {n} non-negative finite values, not all zero; got {values}",
        )
    return tuple(values)


def resolve_dims(dims: Sequence[int] | None, n: int, d: int) -> tuple[int, ...]:
    """Validate subnetwork sizes d_i (1 <= d_i <= d); default: every row spans all d params."""
    if dims is None:
        return (d,) * n
    values = [int(x) for x in dims]
    if len(values) != n:
        raise OptionError("dims", f"dims must have one size per stage ({n}), got {len(values)}")
    if any(x < 1 or x > d for x in values):
        raise OptionError(
            "dims", f"dims must lie in 1..{d} (the number of parameters), got {values!r}"
        )
    return tuple(values)


def check_norm_constant(norm_constant: float) -> float:
    """NormSGD's C must be a positive finite number (it scales every normalized gradient)."""
    c = float(norm_constant)
    if not math.isfinite(c) or c <= 0:
        raise OptionError(
            "norm_constant",
            f"norm_constant must be a positive finite number, got {norm_constant!r}",
        )
    return c


def resolve_options(
    strategy: str,
    n: int,
    priority: Sequence[int] | None = None,
    importances: Sequence[float] | None = None,
    norm_constant: float = 0.5,
    dims: Sequence[int] | None = None,
) -> CombineOptions:
    """Validate every option of an n-stage combination once, in a fixed order.

    `dims=None` leaves the sizes to the caller (`combine` knows d, `fill_grad` its layout);
    they are then recorded as empty and filled in with `dataclasses.replace`.
    """
    name = check_strategy(strategy)
    order = resolve_priority(priority, n)
    k = resolve_importances(importances, n)
    c = check_norm_constant(norm_constant)
    if name in MTL_STRATEGIES and (priority is not None or importances is not None):
        raise OptionError(
            "task_weights",
            f"strategy `{name}` weights the tasks itself and takes no priority or importances",
        )
    return CombineOptions(name, order, k, c, tuple(dims) if dims is not None else ())
