"""`combine`: the pure (n, d) → d form of every strategy, the reference for `fill_grad`.

Rows are the per-task gradients zero-padded to all parameters. Coefficients come from the Gram
matrix in float64 through the strategy table (`coefficients.COMBINATIONS`), and the result is
`weights @ grads`, so orthogonalized copies of the gradients are never built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor

from nestdsl.optim.coefficients import COMBINATIONS, Coefficients, dependence_rtol
from nestdsl.optim.strategies import GREEDY_MESSAGE, resolve_dims, resolve_options


def combine(
    grads: Tensor,
    strategy: str = "osgd",
    priority: Sequence[int] | None = None,
    *,
    importances: Sequence[float] | None = None,
    dims: Sequence[int] | None = None,
    norm_constant: float = 0.5,
) -> Tensor:
    """Combine per-task gradients (row i = stage i+1) into one update direction.

    - ``sgd``: Σ k_i g_i / Σ k_i (Eq. 1).
    - ``sgd-norm``: ĝ_i = g_i / ‖g_i‖ · √d_i · C (Eq. 2); parameter p gets the k-weighted
      average of ĝ_i over the subnetworks containing p. Membership assumes parameters ordered
      by stage, so D_i's parameters are the prefix ``p < dims[i]`` (rows must be zero beyond
      it); with ``dims=None`` every row contains every parameter and d_i = d.
    - ``osgd``: Gram–Schmidt in priority order, direction Σ_i k_i g'_i (Algorithm 2; k_i = 1
      by default, which is the paper's algorithm).
    - ``osgd-norm``: normalize as Eq. 2 (no averaging), then orthogonalize as ``osgd``.
    - ``mtl:*``: torchjd weighting of the Gramian (optional extra).

    `priority` lists stage numbers 1..n, highest priority first (default 1..n). Zero or
    linearly dependent gradients are skipped, never divided by; the dependence tolerance
    follows the precision of `grads` (`coefficients.dependence_rtol`).
    """
    n = grads.shape[0] if grads.dim() == 2 else 0
    options = resolve_options(strategy, max(n, 1), priority, importances, norm_constant)
    weigh = COMBINATIONS.get(options.strategy)
    if weigh is None:
        raise ValueError(GREEDY_MESSAGE)
    if n == 0:
        raise ValueError(f"grads must be an (n, d) tensor with n >= 1, got shape {grads.shape}")
    d = grads.shape[1]
    options = dataclasses.replace(options, dims=resolve_dims(dims, n, d))

    wide = grads.to(torch.float64)  # (n, d)
    gram = (wide @ wide.T).tolist()  # n × n host floats
    if not all(math.isfinite(v) for row in gram for v in row):
        # Non-finite input: say so in the output rather than skipping the offending rows.
        return torch.full((d,), math.nan, dtype=grads.dtype, device=grads.device)
    coefficients = weigh(gram, options, dependence_rtol(grads.dtype))
    return _apply(grads, coefficients, options.dims).to(grads.dtype)


def _apply(grads: Tensor, coefficients: Coefficients, sizes: Sequence[int]) -> Tensor:
    """Σ_i w_i g_i, summed in float64: a NormSGD weight 1/‖g‖ of a tiny gradient can exceed
    the float32 range although the product it scales is of ordinary size.

    When the weights depend on membership (NormSGD), parameters between consecutive subnetwork
    sizes belong to the same stages, so each such segment is one small weighted sum; beyond the
    largest D_i the direction is 0.
    """
    n, d = grads.shape
    wide = grads.to(torch.float64)  # (n, d)

    def weights(members: Sequence[int]) -> Tensor:
        values = coefficients.for_members(members)
        return torch.tensor(values, dtype=torch.float64, device=grads.device)  # (n,)

    if coefficients.importances is None:
        return weights(range(n)) @ wide
    out = torch.zeros(d, dtype=torch.float64, device=grads.device)  # (d,)
    for lo, hi in pairwise(sorted({0, d, *sizes})):
        members = [i for i in range(n) if sizes[i] >= hi]
        if members:
            out[lo:hi] = weights(members) @ wide[:, lo:hi]
    return out
