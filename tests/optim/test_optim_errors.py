"""Clear errors for bad strategies, priorities and lengths (both entry points)."""

from __future__ import annotations

import pytest
import torch

from nestdsl.optim import combine, fill_grad


def toy():
    w1 = torch.nn.Parameter(torch.randn(3))
    w2 = torch.nn.Parameter(torch.randn(2))
    losses = [w1.sum() ** 2, (w1.sum() + w2.sum()) ** 2]
    return losses, [[w1], [w1, w2]]


def test_unknown_strategy_suggests_and_lists():
    with pytest.raises(ValueError, match=r"Did you mean 'osgd'\?") as err:
        combine(torch.randn(2, 3), "osdg")
    for name in ("greedy", "sgd", "sgd-norm", "osgd", "osgd-norm"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="Did you mean 'sgd-norm'"):
        fill_grad(*toy(), strategy="sgd_norm")
    with pytest.raises(ValueError, match="Valid strategies"):
        combine(torch.randn(2, 3), "adam")


def test_greedy_is_not_a_combination():
    with pytest.raises(ValueError, match=r"stage-wise.*active_stage"):
        combine(torch.randn(2, 3), "greedy")


@pytest.mark.parametrize("active", [None, 0, 3, True])
def test_greedy_needs_valid_active_stage(active):
    with pytest.raises(ValueError, match="active_stage"):
        fill_grad(*toy(), strategy="greedy", active_stage=active)


def test_active_stage_rejected_for_other_strategies():
    with pytest.raises(ValueError, match="only meaningful for 'greedy'"):
        fill_grad(*toy(), strategy="osgd", active_stage=1)


@pytest.mark.parametrize("priority", [(1,), (1, 1), (0, 1), (2, 3), (1, 2, 3)])
def test_priority_must_be_permutation(priority):
    with pytest.raises(ValueError, match=r"permutation of the stage numbers 1\.\.2"):
        combine(torch.randn(2, 3), "osgd", priority)
    with pytest.raises(ValueError, match="permutation"):
        fill_grad(*toy(), strategy="osgd", priority=priority)


@pytest.mark.parametrize("importances", [(1.0,), (1.0, 2.0, 3.0), (0.0, 0.0), (-1.0, 1.0)])
def test_bad_importances(importances):
    with pytest.raises(ValueError, match="importances"):
        combine(torch.randn(2, 3), "sgd", importances=importances)
    with pytest.raises(ValueError, match="importances"):
        fill_grad(*toy(), strategy="sgd-norm", importances=importances)


@pytest.mark.parametrize("dims", [(3,), (3, 3, 3), (0, 3), (2, 4)])
def test_bad_dims(dims):
    with pytest.raises(ValueError, match="dims"):
        combine(torch.randn(2, 3), "sgd-norm", dims=dims)


def test_bad_shapes_and_lengths():
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        combine(torch.randn(3), "osgd")
    losses, stages = toy()
    with pytest.raises(ValueError, match="one loss per stage"):
        fill_grad(losses, stages[:1])
    with pytest.raises(ValueError, match="norm_constant"):
        combine(torch.randn(2, 3), "sgd-norm", norm_constant=0.0)
