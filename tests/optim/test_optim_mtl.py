"""Optional torchjd comparators through the same `combine`/`fill_grad` entry points."""

from __future__ import annotations

import pytest
import torch

from nestdsl.optim import MTL_STRATEGIES, combine, fill_grad
from nestdsl.optim import mtl as mtl_module


def test_missing_torchjd_says_how_to_install(monkeypatch):
    monkeypatch.setattr(mtl_module, "torchjd_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install nestdsl\[mtl\]"):
        combine(torch.randn(2, 4), "mtl:mgda")


def test_mtl_names_are_known_even_without_torchjd():
    assert "mtl:upgrad" in MTL_STRATEGIES
    with pytest.raises(ValueError, match="Did you mean 'mtl:mgda'"):
        combine(torch.randn(2, 4), "mtl:mgd")


def test_mtl_rejects_priority():
    with pytest.raises(ValueError, match="no priority"):
        combine(torch.randn(2, 4), "mtl:mgda", (2, 1))


@pytest.mark.parametrize(
    "name", ["mtl:mgda", "mtl:mean", "mtl:imtlg", "mtl:upgrad", "mtl:dualproj"]
)
def test_torchjd_aggregators_match(name):
    aggregation = pytest.importorskip("torchjd.aggregation")
    classes = {
        "mtl:mgda": "MGDA",
        "mtl:mean": "Mean",
        "mtl:imtlg": "IMTLG",
        "mtl:upgrad": "UPGrad",
        "mtl:dualproj": "DualProj",
    }
    torch.manual_seed(0)
    grads = torch.randn(3, 10, dtype=torch.float64)
    expected = getattr(aggregation, classes[name])()(grads)
    assert torch.allclose(combine(grads, name), expected, atol=1e-6)

    w1 = torch.nn.Parameter(torch.randn(4))
    w2 = torch.nn.Parameter(torch.randn(3))
    losses = [(w1**2).sum(), (w1.sum() - w2.prod()) ** 2]
    padded = torch.stack(
        [
            torch.cat([2 * w1.detach(), torch.zeros(3)]),
            torch.cat(
                [
                    torch.autograd.grad(losses[1], w1, retain_graph=True)[0],
                    torch.autograd.grad(losses[1], w2, retain_graph=True)[0],
                ]
            ),
        ]
    ).double()
    fill_grad(losses, [[w1], [w1, w2]], name)
    got = torch.cat([w1.grad, w2.grad]).double()
    assert torch.allclose(got, combine(padded, name), atol=1e-5)
