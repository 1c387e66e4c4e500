"""Stage latencies (nestdsl/evaluate/latency.py): shapes, warm-up, a fake clock, cumulative."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import nestdsl
from nestdsl.compiler.network import AnytimeState, NestedNet
from nestdsl.evaluate import Latency, cumulative, stage_latencies

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from train_toy import TINY_SPEC

pytestmark = pytest.mark.usefixtures("single_thread")


class FakeClock:
    """A clock that only moves when the work being timed moves it (milliseconds per call)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, ms: float) -> None:
        self.now += ms / 1000.0


class Sleeper(nn.Module):
    """Stands in for D_k: costs ``ms`` on the fake clock and returns zeros."""

    def __init__(self, clock: FakeClock, ms: float) -> None:
        super().__init__()
        self.clock, self.ms = clock, ms

    def forward(self, x: Tensor) -> Tensor:
        self.clock.spend(self.ms)
        return torch.zeros(x.shape[0], 10)


def samples(latencies: list[Latency]) -> list[float]:
    return [s for latency in latencies for s in latency.samples_ms]


@pytest.fixture
def net() -> NestedNet:
    torch.manual_seed(0)
    return nestdsl.compile(nestdsl.loads(TINY_SPEC))


def test_latency_statistics() -> None:
    latency = Latency((4.0, 1.0, 3.0, 2.0, 10.0))
    assert latency.median_ms == 3.0
    assert latency.mean_ms == 4.0
    assert latency.p90_ms == pytest.approx(4.0 + 0.6 * 6.0)  # between 4.0 and 10.0
    assert Latency((7.0,)).p90_ms == 7.0
    with pytest.raises(ValueError):
        Latency(())


def test_incremental_times_each_stage_on_cached_state(net, monkeypatch) -> None:
    clock = FakeClock()
    advance = NestedNet.advance
    calls: list[int] = []

    def costly_advance(self: NestedNet, state: AnytimeState) -> Tensor:
        calls.append(state.stage)
        clock.spend(state.stage + 1.0)  # stage k costs k ms
        return advance(self, state)

    monkeypatch.setattr(NestedNet, "advance", costly_advance)
    net.train()
    latencies = stage_latencies(net, torch.randn(2, 1, 8, 8), repeats=4, warmup=2, clock=clock)
    assert net.training, "the caller's mode is restored"
    assert samples(latencies) == pytest.approx([1.0] * 4 + [2.0] * 4 + [3.0] * 4)
    assert calls == [0, 1, 2] * 6, "each repeat starts from scratch; warm-up runs too"
    totals = cumulative(latencies)
    assert [t.median_ms for t in totals] == pytest.approx([1.0, 3.0, 6.0])


def test_standalone_times_each_subnetwork_alone(net, monkeypatch) -> None:
    clock = FakeClock()
    seen: list[int] = []

    def sleeper(k: int) -> nn.Module:
        seen.append(k)
        return Sleeper(clock, 10.0 * k)

    monkeypatch.setattr(net, "subnetwork", sleeper)
    x = torch.randn(3, 1, 8, 8)
    latencies = stage_latencies(net, x, repeats=5, incremental=False, clock=clock)
    assert seen == [1, 2, 3]
    assert samples(latencies) == pytest.approx([10.0] * 5 + [20.0] * 5 + [30.0] * 5)


@pytest.mark.parametrize("incremental", [True, False])
def test_real_clock_shapes_and_no_autograd(net, incremental) -> None:
    x = torch.randn(4, 1, 8, 8)
    latencies = stage_latencies(net, x, repeats=3, warmup=1, incremental=incremental)
    assert len(latencies) == net.num_stages
    assert all(len(lat.samples_ms) == 3 and min(lat.samples_ms) > 0 for lat in latencies)
    assert all(p.grad is None for p in net.parameters())


def test_cumulative_is_monotone_per_sample_and_in_every_statistic() -> None:
    torch.manual_seed(2)
    stages = [Latency(tuple(torch.rand(9).tolist())) for _ in range(4)]
    totals = cumulative(stages)
    for before, after in itertools.pairwise(totals):
        assert all(a >= b for a, b in zip(after.samples_ms, before.samples_ms, strict=True))
        assert after.median_ms >= before.median_ms and after.p90_ms >= before.p90_ms
    assert totals[0] == stages[0]
    assert totals[-1].samples_ms[0] == pytest.approx(sum(s.samples_ms[0] for s in stages))
    with pytest.raises(ValueError, match="repeats"):
        cumulative([Latency((1.0,)), Latency((1.0, 2.0))])


def test_bad_repeat_counts_are_refused(net) -> None:
    with pytest.raises(ValueError):
        stage_latencies(net, torch.randn(1, 1, 8, 8), repeats=0)
