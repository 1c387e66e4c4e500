"""The anytime runtime (nestdsl/evaluate/runtime.py, `NestedNet.within`): deadlines, MAC
budgets, per-example results, and no answer when no stage finished."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

import nestdsl
from nestdsl.compiler.network import AnytimeState, NestedNet
from nestdsl.cost import stage_costs
from nestdsl.evaluate.runtime import Budget, affordable_stages, run_within

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from train_toy import TINY_SPEC

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def net() -> NestedNet:
    torch.manual_seed(0)
    return nestdsl.compile(nestdsl.loads(TINY_SPEC)).eval()


class SlowStages:
    """Stage k costs k ms on a fake clock; ``calls`` lists the stages that ran."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[int] = []

    def clock(self) -> float:
        return self.now


@pytest.fixture
def slow(monkeypatch) -> SlowStages:
    fake = SlowStages()
    advance = NestedNet.advance

    def costly(self: NestedNet, state: AnytimeState) -> Tensor:
        fake.calls.append(state.stage + 1)
        fake.now += (state.stage + 1) / 1000.0
        return advance(self, state)

    monkeypatch.setattr(NestedNet, "advance", costly)
    return fake


def test_generous_deadline_reaches_the_last_stage(net) -> None:
    x = torch.randn(4, *net.input_shape)
    result = net.within(x, seconds=60.0)
    assert result.stage == net.num_stages and result.label == net.stage_labels[-1]
    assert result.logits is not None and torch.allclose(result.logits, net(x)[-1], atol=1e-5)
    assert torch.equal(result.prediction, result.logits.argmax(1))
    assert 0 < result.elapsed_s < 60.0


def test_no_stage_finished_is_reported_not_guessed(net) -> None:
    result = net.within(torch.randn(2, *net.input_shape), seconds=0.0)
    assert (result.stage, result.label, result.logits, result.prediction) == (0, None, None, None)
    assert result.elapsed_s > 0


def test_deadline_keeps_the_last_stage_ready_in_time(net, slow) -> None:
    x = torch.randn(2, *net.input_shape)
    result = run_within(net, x, Budget(seconds=0.0035), clock=slow.clock)
    assert result.stage == 2 and result.elapsed_s == pytest.approx(0.003)
    assert slow.calls == [1, 2, 3], "stage 3 ran, finished late and was discarded"


def test_mac_budget_runs_only_the_stages_that_fit(net, slow) -> None:
    spent = [c.incremental_flops for c in stage_costs(net.ir)]
    x = torch.randn(2, *net.input_shape)
    assert affordable_stages(net, None) == 3
    assert affordable_stages(net, spent[0] + spent[1]) == 2
    assert affordable_stages(net, spent[0] - 1) == 0
    result = net.within(x, macs=spent[0] + spent[1])
    assert result.stage == 2 and slow.calls == [1, 2]
    assert net.within(x, macs=spent[0] - 1).stage == 0


def test_per_example_results_run_each_row_alone(net) -> None:
    x = torch.randn(3, *net.input_shape)
    results = net.within(x, seconds=60.0, per_example=True)
    assert [r.stage for r in results] == [3, 3, 3]
    joint = net(x)[-1]
    for row, result in enumerate(results):
        assert result.logits is not None and result.logits.shape == (1, net.num_classes)
        assert torch.allclose(result.logits[0], joint[row], atol=1e-5)


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="deadline"):
        Budget(seconds=-1.0)
    with pytest.raises(ValueError, match="MAC"):
        Budget(macs=-1)
