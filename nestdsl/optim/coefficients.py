"""Combination coefficients computed from the n×n Gram matrix only (float64, on CPU).

Every strategy's direction is a linear combination of the per-task gradients, so it is enough
to know their pairwise dot products G = g gᵀ: Gram–Schmidt runs in *coefficient space*
(g'_i = Σ_j A_ij g_j, ⟨g'_i, g'_j⟩ = A_i G A_jᵀ) and the orthogonalized copies g'_i are never
materialized. This keeps memory at O(n²) beyond the gradients themselves and lets `fill_grad`
work parameter by parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

DEPENDENCE_RTOL = 1e-5
"""A gradient is skipped when ‖its residual after projection‖ ≤ DEPENDENCE_RTOL · ‖itself‖.

Float32 gradients that are exactly dependent in theory leave residuals around 1e-7 relative;
1e-5 catches them while keeping any genuinely new direction.
"""


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
) -> tuple[Tensor, list[int]]:
    """OSGD (scales=None) or OSGD-norm weights c with direction Σ_j c_j g_j = Σ_i k_i g'_i.

    With normalization the orthogonalization runs on ĝ_i = s_i g_i (Gram S G S), and the
    scales are folded back so the weights apply to the *raw* gradients.
    """
    n = gram.shape[0]
    s = torch.ones(n, dtype=torch.float64) if scales is None else scales.to(torch.float64)
    scaled = gram * s[:, None] * s[None, :]
    coeffs, skipped = gram_schmidt(scaled, order)
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
