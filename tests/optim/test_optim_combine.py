"""`combine` against a literal, loop-by-loop transcription of the paper (§4, Eq. 1/2, Alg. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nestdsl.optim import BASE_STRATEGIES, STRATEGIES, combine
from nestdsl.optim.coefficients import gram_schmidt

COMBINING = ("sgd", "sgd-norm", "osgd", "osgd-norm")


# --- literal transcription of the paper, plain Python lists -----------------------------------


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def paper_normalize(g: list[float], d_i: int, c: float) -> list[float]:
    """Eq. 2: g_i / ‖g_i‖ · √d_i · C (a zero gradient stays zero)."""
    norm = math.sqrt(dot(g, g))
    if norm == 0:
        return [0.0] * len(g)
    return [x / norm * math.sqrt(d_i) * c for x in g]


def paper_sgd(gs, k):
    """Eq. 1: the gradient of Σ k_i L_i / Σ k_i."""
    d = len(gs[0])
    return [sum(k[i] * gs[i][p] for i in range(len(gs))) / sum(k) for p in range(d)]


def paper_sgd_norm(gs, k, dims, c):
    """NormSGD: each parameter averages the normalized gradients of the D_i containing it."""
    n, d = len(gs), len(gs[0])
    normed = [paper_normalize(gs[i], dims[i], c) for i in range(n)]
    out = []
    for p in range(d):
        members = [i for i in range(n) if p < dims[i]]
        total_k = sum(k[i] for i in members)
        out.append(sum(k[i] * normed[i][p] for i in members) / total_k if members else 0.0)
    return out


def paper_osgd(gs, priority, k, normalize, dims, c):
    """Algorithm 2 (lines 5–15), tasks visited in priority order; Σ k_i g'_i (k_i = 1 = paper)."""
    n, d = len(gs), len(gs[0])
    g = [list(row) for row in gs]
    if normalize:
        g = [paper_normalize(g[i], dims[i], c) for i in range(n)]
    total = [0.0] * d
    done: list[int] = []
    for i in [stage - 1 for stage in priority]:
        h = [0.0] * d
        for j in done:
            denom = dot(g[j], g[j])
            if denom == 0:
                continue
            coef = dot(g[i], g[j]) / denom
            h = [h[p] + coef * g[j][p] for p in range(d)]
        g[i] = [g[i][p] - h[p] for p in range(d)]
        total = [total[p] + k[i] * g[i][p] for p in range(d)]
        done.append(i)
    return total


def paper(strategy, gs, priority, k, dims, c):
    if strategy == "sgd":
        return paper_sgd(gs, k)
    if strategy == "sgd-norm":
        return paper_sgd_norm(gs, k, dims, c)
    return paper_osgd(gs, priority, k, strategy == "osgd-norm", dims, c)


# --- random problems -------------------------------------------------------------------------


@st.composite
def problems(draw):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(n, 9))
    value = st.floats(-5, 5, allow_nan=False, allow_infinity=False)
    gs = [[draw(value) for _ in range(d)] for _ in range(n)]
    priority = draw(st.permutations(list(range(1, n + 1))))
    k = [draw(st.floats(0.1, 3.0)) for _ in range(n)]
    dims = [draw(st.integers(1, d)) for _ in range(n)]
    c = draw(st.floats(0.1, 2.0))
    return gs, priority, k, dims, c


def well_conditioned(gs) -> bool:
    """Near-dependent gradients make any Gram–Schmidt discontinuous; compare away from that."""
    rows = np.array(gs, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1)
    if (norms < 1e-3).any():
        return False
    s = np.linalg.svd(rows / norms[:, None], compute_uv=False)
    return bool(s[-1] > 1e-2)


@settings(max_examples=150, deadline=None)
@given(problem=problems(), strategy=st.sampled_from(COMBINING))
def test_combine_equals_literal_paper(problem, strategy):
    gs, priority, k, dims, c = problem
    assume(well_conditioned(gs))
    if strategy == "sgd-norm":
        # NormSGD needs zero padding beyond d_i for membership to be meaningful.
        gs = [[x if p < dims[i] else 0.0 for p, x in enumerate(row)] for i, row in enumerate(gs)]
        assume(all(any(x != 0 for x in row) for row in gs))
    use_dims = dims if strategy.endswith("norm") else None
    expected = paper(strategy, gs, priority, k, use_dims or [len(gs[0])] * len(gs), c)
    got = combine(
        torch.tensor(gs, dtype=torch.float64),
        strategy,
        priority,
        importances=k,
        dims=use_dims,
        norm_constant=c,
    )
    scale = 1.0 + max(abs(x) for x in expected)
    assert np.allclose(got.numpy(), expected, atol=1e-7 * scale, rtol=1e-7)


@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_paper_defaults(problem):
    """No priority / importances / dims means 1..n, all 1 and d_i = d, with C = 1/2."""
    gs, _, _, _, _ = problem
    assume(well_conditioned(gs))
    n, d = len(gs), len(gs[0])
    grads = torch.tensor(gs, dtype=torch.float64)
    for strategy in COMBINING:
        expected = paper(strategy, gs, list(range(1, n + 1)), [1.0] * n, [d] * n, 0.5)
        assert np.allclose(combine(grads, strategy).numpy(), expected, atol=1e-8)


# --- Gram–Schmidt properties -----------------------------------------------------------------


def orthogonalized(grads: torch.Tensor, priority=None) -> tuple[torch.Tensor, list[int]]:
    """Test-only: rebuild g'_i = Σ_j A_ij g_j from the coefficients `combine` relies on."""
    n = grads.shape[0]
    order = list(range(n)) if priority is None else [s - 1 for s in priority]
    gram = grads.double() @ grads.double().T
    coeffs, skipped = gram_schmidt(gram, order)
    return coeffs @ grads.double(), skipped


@settings(max_examples=100, deadline=None)
@given(problem=problems())
def test_orthogonal_and_same_span(problem):
    gs, priority, _, _, _ = problem
    assume(well_conditioned(gs))
    grads = torch.tensor(gs, dtype=torch.float64)
    parts, skipped = orthogonalized(grads, priority)
    assert skipped == []
    gram = parts @ parts.T
    off = gram - torch.diag(gram.diagonal())
    assert off.abs().max() <= 1e-9 * (1 + gram.diagonal().max())
    # Same span: each input is reproduced by projecting onto the orthogonal parts.
    basis = parts / parts.norm(dim=1, keepdim=True)
    rebuilt = (grads @ basis.T) @ basis
    assert torch.allclose(rebuilt, grads, atol=1e-8 * (1 + grads.abs().max()))
    assert torch.allclose(parts.sum(0), combine(grads, "osgd", priority))


def test_zero_and_dependent_gradients_are_skipped():
    torch.manual_seed(0)
    g1, g2 = torch.randn(2, 6)
    rows = torch.stack([g1, torch.zeros(6), g2, 2 * g1 - 3 * g2, torch.zeros(6)])
    parts, skipped = orthogonalized(rows)
    assert skipped == [1, 3, 4]
    assert torch.isfinite(parts).all()
    expected = combine(torch.stack([g1, g2]), "osgd")
    for strategy in ("osgd", "osgd-norm", "sgd-norm", "sgd"):
        out = combine(rows, strategy)
        assert torch.isfinite(out).all(), strategy
    assert torch.allclose(combine(rows, "osgd"), expected, atol=1e-5)


@pytest.mark.parametrize("strategy", COMBINING)
def test_all_zero_gradients_give_zero(strategy):
    out = combine(torch.zeros(3, 5), strategy)
    assert torch.equal(out, torch.zeros(5))


def test_float32_dependent_gradient_is_skipped():
    """A dependence that exists only up to float32 rounding must not blow up a projection."""
    torch.manual_seed(1)
    g = torch.randn(2, 1000)
    rows = torch.stack([g[0], g[1], (0.3 * g[0] + 0.7 * g[1]).float()])
    _, skipped = orthogonalized(rows)
    assert skipped == [2]


def test_priority_swaps_who_projects_onto_whom():
    g1 = torch.tensor([1.0, 0.0, 0.0])
    g2 = torch.tensor([1.0, 1.0, 0.0])
    grads = torch.stack([g1, g2])
    # Default: the second gradient loses its component along the first.
    assert torch.allclose(combine(grads, "osgd"), g1 + torch.tensor([0.0, 1.0, 0.0]))
    # priority (2, 1): the first output's gradient is projected off the second's.
    g1_off = g1 - (g1 @ g2) / (g2 @ g2) * g2
    assert torch.allclose(combine(grads, "osgd", (2, 1)), g2 + g1_off)
    parts, _ = orthogonalized(grads, (2, 1))
    assert torch.allclose(parts[1], g2.double())
    assert torch.allclose(parts[0], g1_off.double())


def test_sgd_norm_membership_prefix():
    """Parameters past d_1 only belong to D_2, so they get D_2's normalized gradient alone."""
    grads = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    out = combine(grads, "sgd-norm", dims=[2, 4], norm_constant=1.0)
    g1 = torch.tensor([0.6, 0.8]) * math.sqrt(2)
    expected = torch.tensor([g1[0] / 2, g1[1] / 2, 2.0, 0.0])
    assert torch.allclose(out, expected)


def test_dtype_and_device_preserved():
    grads = torch.randn(3, 7).to(torch.bfloat16)
    for strategy in COMBINING:
        out = combine(grads, strategy)
        assert out.dtype == torch.bfloat16
        assert torch.isfinite(out.float()).all()


def test_strategy_lists():
    assert BASE_STRATEGIES == ("greedy", "sgd", "sgd-norm", "osgd", "osgd-norm")
    assert STRATEGIES[:5] == BASE_STRATEGIES
