"""Confidence exits (nestdsl/evaluate/exits.py): the geometric profile, calibration, real
row dropping, and the accuracy vs mean-MACs points."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from train_toy import TINY_SPEC

import nestdsl
from nestdsl.compiler.network import AnytimeState, NestedNet
from nestdsl.evaluate.exits import (
    answer_costs,
    calibrate,
    exit_batch,
    exit_curve,
    exit_profile,
)
from nestdsl.evaluate.report import EvalOptions, as_nested
from nestdsl.trained import load_model

COSTS = [1.0, 3.0, 6.0, 10.0]


def test_profile_meets_the_target_and_clamps_at_the_ends() -> None:
    for target in (2.0, 4.0, 8.5):
        q = exit_profile(COSTS, target)
        assert sum(q) == pytest.approx(1.0)
        assert sum(a * b for a, b in zip(q, COSTS, strict=True)) == pytest.approx(target, rel=1e-6)
    assert exit_profile(COSTS, 0.5)[0] == pytest.approx(1.0)
    assert exit_profile(COSTS, 99.0)[-1] == pytest.approx(1.0)
    low, high = exit_profile(COSTS, 2.0), exit_profile(COSTS, 8.0)
    assert low[0] > low[1] > low[2] and high[3] > high[2] > high[1]


def test_calibration_lets_the_profiled_share_leave_at_each_stage() -> None:
    torch.manual_seed(0)
    confidences = torch.rand(4, 1000)
    target = 4.0
    thresholds = calibrate(confidences, COSTS, target)
    q = exit_profile(COSTS, target)
    present = torch.ones(1000, dtype=torch.bool)
    for k, threshold in enumerate(thresholds):
        leaving = present & (confidences[k] >= threshold)
        assert int(leaving.sum()) == round(q[k] * 1000)
        present &= ~leaving
    assert calibrate(confidences, COSTS, 100.0) == [math.inf] * 3


@pytest.fixture
def net() -> NestedNet:
    torch.manual_seed(0)
    return nestdsl.compile(nestdsl.loads(TINY_SPEC)).eval()


def test_exits_drop_rows_and_answer_with_each_examples_stage(net, monkeypatch) -> None:
    rows: list[int] = []
    advance = NestedNet.advance

    def counting(self: NestedNet, state: AnytimeState) -> Tensor:
        rows.append(state.batch)
        return advance(self, state)

    monkeypatch.setattr(NestedNet, "advance", counting)
    x = torch.randn(64, *net.input_shape)
    with torch.no_grad():
        joint = net(x)
    first = joint[0].softmax(1).max(1).values
    threshold = float(first.median())
    outcome = exit_batch(net, x, [threshold, math.inf])
    left_first = first >= threshold
    assert torch.equal(outcome.stages, torch.where(left_first, 1, 3))
    expected = torch.where(left_first, joint[0].argmax(1), joint[2].argmax(1))
    assert torch.equal(outcome.predictions, expected)
    remaining = int((~left_first).sum())
    assert rows == [64, remaining, remaining], "later stages ran only for the rest"


def test_everyone_leaving_early_skips_later_stages(net) -> None:
    x = torch.randn(8, *net.input_shape)
    outcome = exit_batch(net, x, [0.0, 0.0])
    assert outcome.stages.tolist() == [1] * 8
    with pytest.raises(ValueError, match="thresholds"):
        exit_batch(net, x, [0.5])


def test_exit_curve_on_a_trained_run(tiny_run) -> None:
    model = load_model(tiny_run)
    net = as_nested(model.net)
    data = model.datasets()
    costs = answer_costs(net)
    targets = [costs[0], (costs[0] + costs[-1]) // 2, costs[-1]]
    points = exit_curve(net, data.val, data.test, targets, EvalOptions(repeats=1, warmup=0))
    assert [p.target for p in points] == targets
    for point in points:
        assert sum(point.exits) == len(data.test)
        assert costs[0] <= point.mean_macs <= costs[-1]
        assert 0.0 <= point.top1_error <= 1.0
        assert point.as_json()["all_stages_ms"]["median_ms"] > 0
    assert points[0].exits[0] == len(data.test), "the cheapest target exits everyone at 1"
    assert points[-1].mean_macs >= points[0].mean_macs
