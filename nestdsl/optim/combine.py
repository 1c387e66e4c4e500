"""`combine`: the pure (n, d) → d form of every strategy, the reference for `fill_grad`.

Rows are the per-task gradients zero-padded to all parameters. Coefficients come from the Gram
matrix in float64 (see `coefficients`), and the result is `weights @ grads`, so orthogonalized
copies of the gradients are never built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor

from nestdsl.optim.coefficients import (
    average_weights,
    mean_weights,
    norm_scales,
    orthogonal_weights,
)
from nestdsl.optim.mtl import MTL_STRATEGIES, mtl_weights
from nestdsl.optim.strategies import (
    GREEDY_MESSAGE,
    check_norm_constant,
    check_strategy,
    resolve_dims,
    resolve_importances,
    resolve_priority,
)


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
    linearly dependent gradients are skipped, never divided by.
    """
    name = check_strategy(strategy)
    if name == "greedy":
        raise ValueError(GREEDY_MESSAGE)
    if grads.dim() != 2 or grads.shape[0] == 0:
        raise ValueError(f"grads must be an (n, d) tensor with n >= 1, got shape {grads.shape}")
    n, d = grads.shape
    order = resolve_priority(priority, n)
    k = resolve_importances(importances, n)
    sizes = resolve_dims(dims, n, d)
    c = check_norm_constant(norm_constant)
    if name in MTL_STRATEGIES and (priority is not None or importances is not None):
        raise ValueError(f"strategy {name!r} takes no priority or importances")

    work = torch.promote_types(grads.dtype, torch.float32)
    wide = grads.to(torch.float64)
    gram = (wide @ wide.T).cpu()
    if not bool(torch.isfinite(gram).all()):
        # Non-finite input: say so in the output rather than skipping the offending rows.
        return torch.full((d,), math.nan, dtype=grads.dtype, device=grads.device)

    if name == "sgd-norm":
        return _segment_average(grads, gram, sizes, k, c).to(grads.dtype)
    if name == "sgd":
        weights = mean_weights(k)
    elif name == "osgd":
        weights, _ = orthogonal_weights(gram, order, k)
    elif name == "osgd-norm":
        weights, _ = orthogonal_weights(gram, order, k, norm_scales(gram, sizes, c))
    else:
        weights = mtl_weights(name, gram)
    return (weights.to(device=grads.device, dtype=work) @ grads.to(work)).to(grads.dtype)


def _segment_average(
    grads: Tensor, gram: Tensor, sizes: list[int], k: list[float], c: float
) -> Tensor:
    """NormSGD: parameters between consecutive subnetwork sizes share one membership set, so
    each such segment is one small weighted sum; beyond the largest D_i the direction is 0."""
    n, d = grads.shape
    work = torch.promote_types(grads.dtype, torch.float32)
    scales = norm_scales(gram, sizes, c)
    out = torch.zeros(d, dtype=work, device=grads.device)
    bounds = sorted({0, d, *sizes})
    for lo, hi in pairwise(bounds):
        members = [i for i in range(n) if sizes[i] >= hi]
        if not members:
            continue
        weights = average_weights(scales, k, members).to(device=grads.device, dtype=work)
        out[lo:hi] = weights @ grads[:, lo:hi].to(work)
    return out
