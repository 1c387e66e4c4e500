"""Combination coefficients computed from the n×n Gram matrix only (float64, on CPU).

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

DEPENDENCE_RTOL = 1e-5
"""A gradient is skipped when ‖its residual after projection‖ ≤ rtol · ‖itself‖.

Float32 gradients that are exactly dependent in theory leave residuals around 1e-7 relative;
1e-5 catches them while keeping any genuinely new direction. Float16 and bfloat16 gradients
round far more coarsely, so `dependence_rtol` widens the tolerance to a few of their ulps.
"""


def dependence_rtol(dtype: torch.dtype) -> float:
    """The dependence tolerance for gradients held in `dtype`: 1e-5, or 8 ulps if coarser."""
    return max(DEPENDENCE_RTOL, 8 * torch.finfo(dtype).eps)


def norm_scales(gram: Tensor, dims: Sequence[int], norm_constant: float) -> Tensor:
    """NormSGD factors s_i = √d_i · C / ‖g_i‖ (Eq. 2); 0 for a zero gradient (never divided by)."""
    norms = gram.diagonal().clamp(min=0).sqrt()
    scales = torch.zeros(len(dims), dtype=torch.float64)
    for i, d_i in enumerate(dims):
        norm = float(norms[i])
        if norm > 0 and math.isfinite(norm):
            scales[i] = math.sqrt(d_i) * norm_constant / norm
    return scales


def gram_schmidt(
    gram: Tensor, order: Sequence[int], rtol: float = DEPENDENCE_RTOL
) -> tuple[Tensor, list[int]]:
    """Gram–Schmidt in coefficient space: row A_i gives g'_i = Σ_j A_ij g_j.

    Rows are processed in `order` (highest priority first); each residual is projected off the
    earlier kept residuals one by one (modified Gram–Schmidt, the numerically stable form of
    Algorithm 2's line 12). A zero or dependent gradient gets an all-zero row and is reported in
    the returned list of skipped indices.
    """
    n = gram.shape[0]
    coeffs = torch.zeros(n, n, dtype=torch.float64)
    sq_norms: dict[int, float] = {}
    skipped: list[int] = []
    for i in order:
        own = float(gram[i, i])
        if not own > 0 or not math.isfinite(own):
            skipped.append(i)
            continue
        row = torch.zeros(n, dtype=torch.float64)
        row[i] = 1.0
        for j in sq_norms:
            overlap = float(row @ gram @ coeffs[j])
            row -= (overlap / sq_norms[j]) * coeffs[j]
        residual = float(row @ gram @ row)
        if residual <= (rtol * rtol) * own:
            skipped.append(i)
            continue
        coeffs[i] = row
        sq_norms[i] = residual
    return coeffs, skipped


def orthogonal_weights(
    gram: Tensor,
    order: Sequence[int],
    importances: Sequence[float],
    scales: Tensor | None = None,
    rtol: float = DEPENDENCE_RTOL,
) -> tuple[Tensor, list[int]]:
    """OSGD (scales=None) or OSGD-norm weights c with direction Σ_j c_j g_j = Σ_i k_i g'_i.

    With normalization the orthogonalization runs on ĝ_i = s_i g_i (Gram S G S), and the
    scales are folded back so the weights apply to the *raw* gradients.
    """
    n = gram.shape[0]
    s = torch.ones(n, dtype=torch.float64) if scales is None else scales.to(torch.float64)
    scaled = gram * s[:, None] * s[None, :]
    coeffs, skipped = gram_schmidt(scaled, order, rtol)
    k = torch.tensor(list(importances), dtype=torch.float64)
    weights = (k @ coeffs) * s
    return weights, skipped


def average_weights(scales: Tensor, importances: Sequence[float], members: Sequence[int]) -> Tensor:
    """NormSGD weights for one parameter: the importance-weighted average of the normalized
    gradients of the subnetworks it belongs to (`members`, 0-based stage indices)."""
    weights = torch.zeros(scales.shape[0], dtype=torch.float64)
    total = sum(importances[i] for i in members)
    if total <= 0:
        return weights
    for i in members:
        weights[i] = importances[i] * float(scales[i]) / total
    return weights


def mean_weights(importances: Sequence[float]) -> Tensor:
    """Eq. 1: the weights k_i / Σ k_i of the weighted average loss."""
    k = torch.tensor(list(importances), dtype=torch.float64)
    return k / k.sum()


@dataclass(frozen=True)
class Coefficients:
    """A strategy's answer for one step, from the Gram matrix alone.

    weights      (n,) float64. Parameter p's direction is Σ_i w_i g_i[p] ...
    importances  ... unless this is set (NormSGD): then `weights` are the normalization
                 scales s_i and p averages the normalized gradients of the stages containing
                 it, weighted by these k_i (see `for_members`).
    skipped      0-based stages left out: zero, non-finite or linearly dependent gradients.
    """

    weights: Tensor
    skipped: tuple[int, ...] = ()
    importances: tuple[float, ...] | None = None

    def for_members(self, members: Sequence[int]) -> Tensor:
        """The (n,) weights for a parameter contained in the subnetworks `members` (0-based)."""
        if self.importances is None:
            return self.weights
        return average_weights(self.weights, self.importances, members)


def _mean(gram: Tensor, options: CombineOptions, rtol: float) -> Coefficients:
    return Coefficients(mean_weights(options.importances))


def _normalized_average(gram: Tensor, options: CombineOptions, rtol: float) -> Coefficients:
    scales = norm_scales(gram, options.dims, options.norm_constant)
    zero = tuple(i for i in range(options.stages) if float(scales[i]) == 0.0)
    return Coefficients(scales, zero, options.importances)


def _orthogonal(gram: Tensor, options: CombineOptions, rtol: float) -> Coefficients:
    weights, skipped = orthogonal_weights(gram, options.order, options.importances, rtol=rtol)
    return Coefficients(weights, tuple(sorted(skipped)))


def _orthogonal_normalized(gram: Tensor, options: CombineOptions, rtol: float) -> Coefficients:
    scales = norm_scales(gram, options.dims, options.norm_constant)
    weights, skipped = orthogonal_weights(gram, options.order, options.importances, scales, rtol)
    return Coefficients(weights, tuple(sorted(skipped)))


def _comparator(gram: Tensor, options: CombineOptions, rtol: float) -> Coefficients:
    return Coefficients(mtl_weights(options.strategy, gram))


WeightsFn = Callable[[Tensor, CombineOptions, float], Coefficients]
"""(float64 Gram matrix on the CPU, options, dependence tolerance) → coefficients."""

COMBINATIONS: dict[str, WeightsFn] = {
    "sgd": _mean,
    "sgd-norm": _normalized_average,
    "osgd": _orthogonal,
    "osgd-norm": _orthogonal_normalized,
    **dict.fromkeys(MTL_STRATEGIES, _comparator),
}
"""The one strategy table: every strategy that is a combination of per-task gradients (all but
``greedy``, which trains one stage at a time) and how its coefficients come from the Gram."""
