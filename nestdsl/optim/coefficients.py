"""Combination coefficients computed from the n×n Gram matrix only (host float64 numbers).

Every strategy's direction is a linear combination of the per-task gradients, so it is enough
to know their pairwise dot products G = g gᵀ: Gram–Schmidt runs in *coefficient space*
(g'_i = Σ_j A_ij g_j, ⟨g'_i, g'_j⟩ = A_i G A_jᵀ) and the orthogonalized copies g'_i are never
materialized. This keeps memory at O(n²) beyond the gradients themselves and lets `fill_grad`
work parameter by parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nestdsl.optim.mtl import MTL_STRATEGIES, mtl_weights
from nestdsl.optim.strategies import CombineOptions

Vector = list[float]
Matrix = list[list[float]]

DEPENDENCE_RTOL = 1e-5
"""A gradient is skipped when ‖its residual after projection‖ ≤ rtol · ‖itself‖.

Float32 gradients that are exactly dependent in theory leave residuals around 1e-7 relative;
1e-5 catches them while keeping any genuinely new direction. Float16 and bfloat16 gradients
round far more coarsely, so `dependence_rtol` widens the tolerance to a few of their ulps.
"""


def dependence_rtol(dtype: torch.dtype) -> float:
    """The dependence tolerance for gradients held in `dtype`: 1e-5, or 8 ulps if coarser."""
    return max(DEPENDENCE_RTOL, 8 * torch.finfo(dtype).eps)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _quadratic(a: Vector, gram: Matrix, b: Vector) -> float:
    """a G bᵀ for coefficient rows a, b."""
    return _dot(a, [_dot(row, b) for row in gram])


def norm_scales(gram: Matrix, dims: Sequence[int], norm_constant: float) -> Vector:
    """NormSGD factors s_i = √d_i · C / ‖g_i‖ (Eq. 2); 0 for a zero gradient (never divided by)."""
    scales = [0.0] * len(dims)
    for i, d_i in enumerate(dims):
        norm = math.sqrt(max(gram[i][i], 0.0))
        if norm > 0 and math.isfinite(norm):
            scales[i] = math.sqrt(d_i) * norm_constant / norm
    return scales


def schmidt(
    gram: Matrix, order: Sequence[int], rtol: float = DEPENDENCE_RTOL
) -> tuple[Matrix, list[int]]:
    """Gram–Schmidt in coefficient space: row A_i gives g'_i = Σ_j A_ij g_j.

    Rows are processed in `order` (highest priority first); each residual is projected off the
    earlier kept residuals one by one (modified Gram–Schmidt, the numerically stable form of
    Algorithm 2's line 12). A zero or dependent gradient gets an all-zero row and is reported in
    the returned list of skipped indices. Plain Python floats: n is the number of stages, and
    host arithmetic on a handful of numbers costs less than dispatching tensor ops for it.
    """
    n = len(gram)
    coeffs: Matrix = [[0.0] * n for _ in range(n)]
    sq_norms: dict[int, float] = {}
    skipped: list[int] = []
    for i in order:
        own = gram[i][i]
        if not own > 0 or not math.isfinite(own):
            skipped.append(i)
            continue
        row = [0.0] * n
        row[i] = 1.0
        for j in sq_norms:
            factor = _quadratic(row, gram, coeffs[j]) / sq_norms[j]
            row = [r - factor * c for r, c in zip(row, coeffs[j], strict=True)]
        residual = _quadratic(row, gram, row)
        if residual <= (rtol * rtol) * own:
            skipped.append(i)
            continue
        coeffs[i] = row
        sq_norms[i] = residual
    return coeffs, skipped


def gram_schmidt(
    gram: Tensor, order: Sequence[int], rtol: float = DEPENDENCE_RTOL
) -> tuple[Tensor, list[int]]:
    """`schmidt` on a Gram tensor, returning the (n, n) float64 coefficient matrix."""
    coeffs, skipped = schmidt(gram.tolist(), order, rtol)
    return torch.tensor(coeffs, dtype=torch.float64), skipped


def orthogonal_weights(
    gram: Matrix,
    order: Sequence[int],
    importances: Sequence[float],
    scales: Vector | None = None,
    rtol: float = DEPENDENCE_RTOL,
) -> tuple[Vector, list[int]]:
    """OSGD (scales=None) or OSGD-norm weights c with direction Σ_j c_j g_j = Σ_i k_i g'_i.

    With normalization the orthogonalization runs on ĝ_i = s_i g_i (Gram S G S), and the
    scales are folded back so the weights apply to the *raw* gradients.
    """
    n = len(gram)
    s = [1.0] * n if scales is None else list(scales)
    scaled = [[gram[i][j] * s[i] * s[j] for j in range(n)] for i in range(n)]
    coeffs, skipped = schmidt(scaled, order, rtol)
    weights = [_dot(importances, [coeffs[i][j] for i in range(n)]) * s[j] for j in range(n)]
    return weights, skipped


def average_weights(scales: Vector, importances: Sequence[float], members: Sequence[int]) -> Vector:
    """NormSGD weights for one parameter: the importance-weighted average of the normalized
    gradients of the subnetworks it belongs to (`members`, 0-based stage indices)."""
    weights = [0.0] * len(scales)
    total = sum(importances[i] for i in members)
    if total <= 0:
        return weights
    for i in members:
        weights[i] = importances[i] * scales[i] / total
    return weights


def mean_weights(importances: Sequence[float]) -> Vector:
    """Eq. 1: the weights k_i / Σ k_i of the weighted average loss."""
    total = math.fsum(importances)
    return [k / total for k in importances]


def sum_weights(importances: Sequence[float]) -> Vector:
    """Eq. 1 with every loss multiplied by n: the weights n k_i / Σ k_i (all 1 by default)."""
    return [len(importances) * w for w in mean_weights(importances)]


@dataclass(frozen=True)
class Coefficients:
    """A strategy's answer for one step, from the Gram matrix alone.

    weights      n floats. Parameter p's direction is Σ_i w_i g_i[p] ...
    importances  ... unless this is set (NormSGD): then `weights` are the normalization
                 scales s_i and p averages the normalized gradients of the stages containing
                 it, weighted by these k_i (see `for_members`).
    skipped      0-based stages left out: zero, non-finite or linearly dependent gradients.
    """

    weights: Vector
    skipped: tuple[int, ...] = ()
    importances: tuple[float, ...] | None = None

    def for_members(self, members: Sequence[int]) -> Vector:
        """The (n,) weights for a parameter contained in the subnetworks `members` (0-based)."""
        if self.importances is None:
            return self.weights
        return average_weights(self.weights, self.importances, members)


def _mean(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    return Coefficients(mean_weights(options.importances))


def _sum(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    return Coefficients(sum_weights(options.importances))


def _normalized_average(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    scales = norm_scales(gram, options.dims, options.norm_constant)
    zero = tuple(i for i in range(options.stages) if scales[i] == 0.0)
    return Coefficients(scales, zero, options.importances)


def _orthogonal(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    weights, skipped = orthogonal_weights(gram, options.order, options.importances, rtol=rtol)
    return Coefficients(weights, tuple(sorted(skipped)))


def _orthogonal_normalized(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    scales = norm_scales(gram, options.dims, options.norm_constant)
    weights, skipped = orthogonal_weights(gram, options.order, options.importances, scales, rtol)
    return Coefficients(weights, tuple(sorted(skipped)))


def _comparator(gram: Matrix, options: CombineOptions, rtol: float) -> Coefficients:
    weights = mtl_weights(options.strategy, torch.tensor(gram, dtype=torch.float64))
    return Coefficients(weights.tolist())


WeightsFn = Callable[[Matrix, CombineOptions, float], Coefficients]
"""(Gram matrix as host floats, options, dependence tolerance) → coefficients."""

COMBINATIONS: dict[str, WeightsFn] = {
    "sgd": _mean,
    "sgd-sum": _sum,
    "sgd-norm": _normalized_average,
    "osgd": _orthogonal,
    "osgd-norm": _orthogonal_normalized,
    **dict.fromkeys(MTL_STRATEGIES, _comparator),
}
"""The one strategy table: every strategy that is a combination of per-task gradients (all but
``greedy``, which trains one stage at a time) and how its coefficients come from the Gram."""
