"""Strategy names and argument validation shared by `combine` and `fill_grad`.

Validation lives in one place so that the pure function and the training-step helper reject
exactly the same inputs with exactly the same messages.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

from nestdsl.optim.mtl import MTL_STRATEGIES, torchjd_available

BASE_STRATEGIES: tuple[str, ...] = ("greedy", "sgd", "sgd-norm", "osgd", "osgd-norm")
"""The paper's strategies (§4): always available."""

STRATEGIES: tuple[str, ...] = BASE_STRATEGIES + (MTL_STRATEGIES if torchjd_available() else ())
"""Every strategy usable in this environment (torchjd comparators only when installed)."""

NORMALIZING: frozenset[str] = frozenset({"sgd-norm", "osgd-norm"})
ORTHOGONALIZING: frozenset[str] = frozenset({"osgd", "osgd-norm"})

GREEDY_MESSAGE = (
    "strategy 'greedy' is stage-wise (Algorithm 1), not a combination of gradients: "
    "train one stage at a time with fill_grad(..., strategy='greedy', active_stage=k), "
    "which back-propagates L_k into the new parameters w_k \\ w_(k-1) only"
)


def check_strategy(strategy: str) -> str:
    """Return the canonical strategy name or raise a ValueError that suggests the closest one.

    The `mtl:*` names are recognised even without torchjd, so that the error can say how to
    install it instead of pretending the name does not exist.
    """
    name = strategy.strip().lower() if isinstance(strategy, str) else strategy
    known = BASE_STRATEGIES + MTL_STRATEGIES
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown training strategy {strategy!r}.{hint} "
        f"Valid strategies: {', '.join(BASE_STRATEGIES + MTL_STRATEGIES)}"
    )


def resolve_priority(priority: Sequence[int] | None, n: int) -> list[int]:
    """Turn a priority (stage numbers 1..n, highest first) into a 0-based processing order."""
    if priority is None:
        return list(range(n))
    items = list(priority)
    if len(items) != n or sorted(items) != list(range(1, n + 1)):
        raise ValueError(
            f"priority must be a permutation of the stage numbers 1..{n} (highest priority "
            f"first), got {items!r}"
        )
    return [int(stage) - 1 for stage in items]


def resolve_importances(importances: Sequence[float] | None, n: int) -> list[float]:
    """Validate loss importances k_i (non-negative, finite, not all zero); default all 1."""
    if importances is None:
        return [1.0] * n
    values = [float(k) for k in importances]
    if len(values) != n:
        raise ValueError(f"importances must have one value per stage ({n}), got {len(values)}")
    if any(not math.isfinite(k) or k < 0 for k in values) or sum(values) <= 0:
        raise ValueError(
            f"importances must be finite, non-negative and not all zero, got {values!r}"
        )
    return values


def resolve_dims(dims: Sequence[int] | None, n: int, d: int) -> list[int]:
    """Validate subnetwork sizes d_i (1 <= d_i <= d); default: every row spans all d params."""
    if dims is None:
        return [d] * n
    values = [int(x) for x in dims]
    if len(values) != n:
        raise ValueError(f"dims must have one size per stage ({n}), got {len(values)}")
    if any(x < 1 or x > d for x in values):
        raise ValueError(f"dims must lie in 1..{d} (the number of parameters), got {values!r}")
    return values


def check_norm_constant(norm_constant: float) -> float:
    """NormSGD's C must be a positive finite number (it scales every normalized gradient)."""
    c = float(norm_constant)
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"norm_constant must be a positive finite number, got {norm_constant!r}")
    return c
