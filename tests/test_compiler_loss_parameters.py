"""`NestedNet.loss_parameters(k)`: D_k by loss path, the membership NormSGD averages over.

Checked against autograd itself: the parameters that receive a gradient from loss k are
exactly ``loss_parameters(k)``, on width, depth and cascade nesting.
"""

from __future__ import annotations

import pytest
import torch
from spec_helpers import SPECS, small_spec

import nestdsl
from nestdsl.compiler import NestedNet

CASES = {
    "width": lambda: nestdsl.load(SPECS / "digits_width.nest"),
    "depth": lambda: nestdsl.load(SPECS / "digits_depth.nest"),
    "width_depth": lambda: nestdsl.load(SPECS / "digits_width_depth.nest"),
    "cascade": lambda: small_spec([("sparse_resnet", 4, 8, 1)], "cascade * 2"),
}


def _net(case: str) -> NestedNet:
    torch.manual_seed(0)
    return nestdsl.compile(CASES[case]())


def _reached(net: NestedNet, k: int) -> set[int]:
    """Ids of the parameters that loss k's gradient reaches in anytime execution (joint
    execution runs whole layers densely, so every stripe would get a gradient, zeros or not)."""
    x = torch.randn(4, *net.input_shape, generator=torch.Generator().manual_seed(0))
    logits = list(net.anytime(x))[k - 1]
    params = list(net.parameters())
    grads = torch.autograd.grad(logits.square().sum(), params, allow_unused=True)
    return {id(p) for p, g in zip(params, grads, strict=True) if g is not None}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_parameters_are_what_the_loss_reaches(case: str) -> None:
    net = _net(case)
    for k in range(1, net.num_stages + 1):
        listed = net.loss_parameters(k)
        assert len({id(p) for p in listed}) == len(listed)
        assert {id(p) for p in listed} == _reached(net, k)
        assert {id(p) for p in listed} <= {id(p) for p in net.stage_parameters(k)}


@pytest.mark.parametrize("case", list(CASES))
def test_an_earlier_head_belongs_to_its_own_loss_only(case: str) -> None:
    net = _net(case)
    head_1 = {id(p) for p in net.op(net.ir.heads[0]).parameters()}
    assert head_1 <= {id(p) for p in net.loss_parameters(1)}
    for k in range(2, net.num_stages + 1):
        assert head_1 <= {id(p) for p in net.stage_parameters(k)}  # listed in D_k ...
        assert not head_1 & {id(p) for p in net.loss_parameters(k)}  # ... but not reached


def test_a_cascade_exit_branch_belongs_to_its_exit_only() -> None:
    net = _net("cascade")
    branches = [layer for layer in net.ir.layers.values() if layer.id.startswith("exit")]
    assert branches, "the cascade spec has an early-exit branch"
    for layer in branches:
        own = {id(p) for p in net.op(layer.id).parameters()}
        assert own <= {id(p) for p in net.loss_parameters(layer.stage)}
        later = range(layer.stage + 1, net.num_stages + 1)
        assert all(not own & {id(p) for p in net.loss_parameters(k)} for k in later)
