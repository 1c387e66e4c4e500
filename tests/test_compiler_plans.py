"""Planning block-wise execution of width-nested convolutions (nestdsl.compiler.plans)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from nestdsl.compiler.plans import (
    DEVICE_COSTS,
    PLANNERS,
    Block,
    ConvShape,
    DeviceCost,
    candidate_plans,
    cheapest_plan,
    dense_plan,
    stripe_plan,
)

SPECS = Path(__file__).resolve().parent.parent / "specs"


def width_nested(channels: int, kernel: int = 3) -> ConvShape:
    """A 1:1:2 width-nested convolution from ``channels`` to ``channels`` channels."""
    quarter = channels // 4
    return ConvShape((quarter, quarter, 2 * quarter), (quarter, 2 * quarter, channels), channels, 3)


def test_dense_and_stripe_plans() -> None:
    shape = width_nested(64)
    assert dense_plan(shape, "cpu") == (Block(0, 3, 64),)
    assert stripe_plan(shape, "cpu") == (Block(0, 1, 16), Block(1, 2, 32), Block(2, 3, 64))
    assert list(Block(1, 3, 64).stripes) == [1, 2]


def test_every_plan_covers_the_stripes_in_order() -> None:
    shape = ConvShape((8, 8, 16, 32, 64), (8, 16, 32, 64, 128), 128, 1)
    for planner in PLANNERS.values():
        for device in ("cpu", "cuda"):
            plan = planner(shape, device)
            assert plan[0].first == 0 and plan[-1].stop == 5
            assert all(a.stop == b.first for a, b in itertools.pairwise(plan))
            assert all(b.width >= max(shape.kept[b.first : b.stop]) for b in plan)


@pytest.mark.parametrize(("channels", "blocks"), [(16, 1), (32, 1), (128, 3)])
def test_cpu_picks_dense_for_narrow_stripes_and_blocks_for_wide_ones(
    channels: int, blocks: int
) -> None:
    assert len(cheapest_plan(width_nested(channels), "cpu")) == blocks


def test_the_cheapest_plan_is_no_costlier_than_dense_or_stripes() -> None:
    for channels in (16, 32, 64, 128, 256):
        shape = width_nested(channels)
        for device, costs in DEVICE_COSTS.items():
            best = shape.cost(cheapest_plan(shape, device), costs)
            assert best <= shape.cost(dense_plan(shape, device), costs)
            assert best <= shape.cost(stripe_plan(shape, device), costs)


def test_unknown_devices_use_the_gpu_row() -> None:
    shape = width_nested(256)
    assert cheapest_plan(shape, "mps") == cheapest_plan(shape, "cuda")


def test_candidates_are_dense_then_every_partition_once() -> None:
    shape = width_nested(64)
    plans = candidate_plans(shape)
    assert plans[0] == dense_plan(shape, "cpu")
    # the one-run partition reads every input channel here, so it is the dense plan itself
    assert len(plans) == len(set(plans)) == 2 ** (len(shape.stripes) - 1)
    assert cheapest_plan(shape, "cpu", DeviceCost(full_rate_channels=1, per_block=0.0)) == (
        stripe_plan(shape, "cpu")
    )


def test_a_forced_plan_computes_what_the_dense_weight_does() -> None:
    import torch

    import nestdsl
    from nestdsl.compiler.ops import ConvOp

    net = nestdsl.compile(nestdsl.load(SPECS / "digits_width.nest")).eval()
    ops = (o for o in net.ops.values() if isinstance(o, ConvOp) and o.shape is not None)
    op = next(o for o in ops if o.in_channels > 1)
    assert op.shape is not None
    x = torch.randn(2, op.shape.in_channels, 16, 16)
    expected = op([x])
    for plan in candidate_plans(op.shape):
        op.use_plan("cpu", plan)
        assert torch.allclose(op([x]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="do not cover"):
        op.use_plan("cpu", (Block(0, 1, op.shape.in_channels),))
    with pytest.raises(ValueError, match="reads less"):
        op.use_plan("cpu", (Block(0, len(op.shape.stripes), 1),))
