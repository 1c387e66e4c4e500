"""Hard per-task gradients — zero, tiny, parallel, anti-parallel — in float32, float16, bfloat16.

Both entry points must give a finite direction equal to the exact answer for those inputs
(computed here by hand in float64), never a division by a zero or rounding-noise residual.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nestdsl.optim import combine, fill_grad

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
COMBINING = ("sgd", "sgd-norm", "osgd", "osgd-norm")
C = 0.5


def unit(d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g / g.norm()


def expected(strategy: str, rows: torch.Tensor) -> torch.Tensor:
    """The exact direction for two rows whose second is a multiple (or zero) of the first,
    over all d parameters (dims = d): dependent rows contribute nothing after the first."""
    g1, g2 = rows[0].double(), rows[1].double()
    d = rows.shape[1]
    normalized = [g * (d**0.5 * C / g.norm()) if g.norm() > 0 else g * 0 for g in (g1, g2)]
    table = {
        "sgd": (g1 + g2) / 2,
        "sgd-norm": (normalized[0] + normalized[1]) / 2,
        "osgd": g1 if g1.norm() > 0 else g2,
        "osgd-norm": normalized[0] if g1.norm() > 0 else normalized[1],
    }
    return table[strategy]


def cases(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Two-row problems with an exactly representable relation between the rows."""
    g = unit().to(dtype)
    tiny = torch.finfo(dtype).tiny  # smallest normal: squares underflow in the input dtype
    subnormal = g * (tiny / 2**6)  # doubling it is exact, so the second row stays parallel
    return {
        "zero": torch.stack([g, torch.zeros_like(g)]),
        "zero-first": torch.stack([torch.zeros_like(g), g]),
        "tiny": torch.stack([g * tiny, g * (2 * tiny)]),
        "subnormal": torch.stack([subnormal, subnormal * 2]),
        "parallel": torch.stack([g, g * 4]),
        "anti-parallel": torch.stack([g, -g]),
        "both-zero": torch.zeros(2, g.shape[0], dtype=dtype),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("strategy", COMBINING)
@pytest.mark.parametrize(
    "case", ["zero", "zero-first", "tiny", "subnormal", "parallel", "anti-parallel", "both-zero"]
)
def test_combine_hard_cases(dtype, strategy, case):
    rows = cases(dtype)[case]
    got = combine(rows, strategy, norm_constant=C)
    assert got.dtype == dtype
    assert torch.isfinite(got.double()).all()
    want = expected(strategy, rows)
    scale = max(float(want.abs().max()), float(rows.double().abs().max()))
    tolerance = 4 * torch.finfo(dtype).eps * max(scale, torch.finfo(dtype).tiny)
    assert torch.allclose(got.double(), want, rtol=0, atol=tolerance), (got, want)


def nearly_parallel(dtype: torch.dtype, factor: float) -> torch.Tensor:
    """g and factor·g rounded to `dtype`: dependent up to the dtype's rounding only."""
    g = unit(16, seed=3)
    return torch.stack([g, g * factor]).to(dtype)


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    factor=st.floats(-50, 50).filter(lambda f: abs(f) > 1e-2),
    strategy=st.sampled_from(("osgd", "osgd-norm")),
)
def test_rounding_noise_is_not_a_new_direction(dtype, factor, strategy):
    """OSGD keeps only the first of two gradients that differ by rounding in their dtype."""
    rows = nearly_parallel(dtype, factor)
    got = combine(rows, strategy, norm_constant=C).double()
    first = rows[0].double()
    if strategy == "osgd-norm":
        first = first * (16**0.5 * C / first.norm())
    assert torch.isfinite(got).all()
    assert torch.allclose(
        got, first, rtol=0, atol=8 * torch.finfo(dtype).eps * float(first.abs().max())
    )


class Pair(torch.nn.Module):
    """One parameter vector shared by two stages whose losses are linear in it, so the
    per-task gradients are exactly the given rows."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(rows.shape[1], dtype=rows.dtype))
        self.rows = rows

    def losses(self) -> list[torch.Tensor]:
        return [(self.w * row).sum() for row in self.rows]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("strategy", COMBINING)
@pytest.mark.parametrize(
    "case", ["zero", "tiny", "subnormal", "parallel", "anti-parallel", "both-zero"]
)
def test_fill_grad_hard_cases(dtype, strategy, case):
    rows = cases(dtype)[case]
    pair = Pair(rows)
    fill_grad(pair.losses(), [[pair.w], [pair.w]], strategy, norm_constant=C)
    grad = pair.w.grad
    assert grad is not None and grad.dtype == dtype
    assert torch.isfinite(grad.double()).all()
    want = combine(rows, strategy, norm_constant=C).double()
    scale = max(float(want.abs().max()), float(rows.double().abs().max()))
    tolerance = 4 * torch.finfo(dtype).eps * max(scale, torch.finfo(dtype).tiny)
    assert torch.allclose(grad.double(), want, rtol=0, atol=tolerance)
