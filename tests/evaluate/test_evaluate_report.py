"""`evaluate_run` (nestdsl/evaluate/report.py): counted MACs against the cost model, the
report's shape and JSON, and trained-model loading (nestdsl/trained.py `load_model`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nestdsl
from nestdsl.cost import stage_costs
from nestdsl.diagnostics import NestError
from nestdsl.evaluate.report import EvalOptions, as_nested, counted_macs, evaluate_run
from nestdsl.trained import load_model

SPECS = Path(__file__).resolve().parent.parent.parent / "specs"


@pytest.mark.parametrize(
    "spec", ["digits_width", "digits_width_depth", "digits_se_width", "digits_densenet_depth"]
)
def test_counted_macs_equal_the_cost_model(spec) -> None:
    net = nestdsl.compile(nestdsl.load(SPECS / f"{spec}.nest"))
    counted = counted_macs(net, torch.randn(2, *net.input_shape))
    assert counted == [cost.incremental_flops for cost in stage_costs(net.ir)]


def test_evaluate_run_reports_every_stage_and_batch(tiny_run) -> None:
    model = load_model(tiny_run)
    net = as_nested(model.net)
    test = model.datasets().test
    options = EvalOptions(batches=(1, 4, 4), repeats=2, warmup=0)
    report = evaluate_run(net, test, split="test", source=str(tiny_run), options=options)
    assert report.examples == len(test) and len(report.stages) == 3
    costs = stage_costs(net.ir)
    anytime = 0
    for stage, cost in zip(report.stages, costs, strict=True):
        anytime += cost.incremental_flops
        assert (stage.params, stage.macs) == (cost.params, cost.flops)
        assert (stage.incremental_macs, stage.anytime_macs) == (cost.incremental_flops, anytime)
        assert [t.batch for t in stage.timings] == [1, 4]
        for timing in stage.timings:
            assert len(timing.incremental.samples_ms) == 2
            assert timing.until.median_ms >= timing.incremental.median_ms
    document = report.as_json()
    first = document["stages"][0]
    assert set(first["latency"]) == {"1", "4"}
    assert set(first["latency"]["1"]) == {"incremental", "until", "standalone"}
    assert first["top1_error"] == pytest.approx(1 - report.stages[0].metrics.top1)


def test_load_model_from_a_spec_and_weights(tiny_run) -> None:
    model = load_model(tiny_run / "spec.nest", weights=tiny_run, data="synthetic:64")
    run = load_model(tiny_run)
    x = torch.randn(2, 1, 8, 8)
    assert all(torch.equal(a, b) for a, b in zip(model.net(x), run.net(x), strict=True))
    assert model.data == "synthetic:64" and run.data == "synthetic:64"


def test_load_model_refuses_a_spec_without_weights_and_a_dir_with_them(tiny_run) -> None:
    with pytest.raises(NestError, match="E910"):
        load_model(tiny_run / "spec.nest")
    with pytest.raises(NestError, match="E910"):
        load_model(tiny_run, weights=tiny_run)


def test_a_standalone_network_is_refused() -> None:
    net = nestdsl.compile(nestdsl.load(SPECS / "digits_width.nest"))
    with pytest.raises(NestError, match="E911"):
        as_nested(net.subnetwork(2))
