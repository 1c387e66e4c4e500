"""The Oracle spec transformation on every shipped spec: stage k as a plain network."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_helpers import SPECS, shipped_specs

import nestdsl
from nestdsl.cost import stage_costs
from nestdsl.diagnostics import NestError
from nestdsl.oracle import oracle, oracle_cost, oracle_source, transform
from nestdsl.schedule import expand

PATHS = [
    path
    for path in shipped_specs()
    if (spec := nestdsl.load(path)).stem is not None and all(b.builtin for b in spec.blocks)
]
"""The shipped specs of built-in block kinds (the transformation refuses user units)."""
IDS = [p.stem for p in PATHS]


def _stages(path: Path) -> range:
    return range(1, expand(nestdsl.load(path).schedule).num_stages + 1)


def test_digits_width_oracle_text() -> None:
    text = oracle_source(nestdsl.load(SPECS / "digits_width.nest"), 2)
    assert text == (
        "nest 1\n"
        "# Oracle of stage 2 (w2) of `digits_width`: the same network at that stage's\n"
        "# widths and depths, un-nested (nothing pruned), to be trained on its own.\n"
        "network digits_width_oracle_w2\n"
        "\n"
        "input    shape=(1, 16, 16)\n"
        "stem     conv channels=16 kernel=3\n"
        "block    s1 basic count=1 channels=16 stride=1\n"
        "block    s2 basic count=1 channels=32 stride=2\n"
        "head     classes=10\n"
    )


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_oracle_is_a_checked_one_stage_network(path: Path) -> None:
    spec = nestdsl.load(path)
    for k in _stages(path):
        plain = oracle(spec, k)
        assert plain.schedule.steps == () and plain.source == oracle_source(spec, k)
        ir = nestdsl.build_ir(plain)
        assert ir.num_stages == 1 and ir.num_classes == spec.head.classes


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_stage_one_has_nothing_pruned_and_the_last_stage_is_the_base_network(path: Path) -> None:
    spec = nestdsl.load(path)
    stages = _stages(path)
    first = oracle_cost(spec, 1)
    plan = expand(spec.schedule)
    if plan.cascade:  # D_1 adds its exit's own 3x3 branch to the trunk the Oracle keeps
        branch = nestdsl.build_ir(spec).layers["exit1"]
        assert first.nested_params - first.params == branch.channels * (9 * branch.channels + 2)
    else:  # D_1 reads only stage-1 units: no edge of it was pruned
        assert (first.params, first.flops) == (first.nested_params, first.nested_flops)
    last = transform(spec, stages[-1])
    assert (last.stem, last.blocks, last.head) == (spec.stem, spec.blocks, spec.head)
    (base,) = stage_costs(nestdsl.build_ir(oracle(spec, stages[-1])))
    plain = spec.model_copy(update={"schedule": last.schedule})
    assert base.params == stage_costs(nestdsl.build_ir(plain))[0].params


def test_width_oracles_are_dense_where_nesting_pruned() -> None:
    """Width nesting keeps no edge from a later stripe to an earlier one, even inside D_k."""
    spec = nestdsl.load(SPECS / "digits_width.nest")
    costs = [oracle_cost(spec, k) for k in (1, 2, 3)]
    assert [(c.params, c.nested_params) for c in costs] == [
        (5122, 5122),
        (19706, 14970),
        (77290, 53610),
    ]


def test_depth_oracle_keeps_the_levels_layers() -> None:
    spec = nestdsl.load(SPECS / "digits_depth.nest")
    assert [b.count for b in transform(spec, 1).blocks] == [1, 1]
    assert [b.count for b in transform(spec, 2).blocks] == [2, 2]
    assert [b.count for b in transform(spec, 3).blocks] == [4, 4]


def test_cascade_oracle_cuts_the_trunk_at_the_exit() -> None:
    spec = nestdsl.load(SPECS / "sparse_resnet98_eann.nest")
    assert [(b.name, b.count) for b in transform(spec, 1).blocks] == [("s1", 12)]
    assert [(b.name, b.count) for b in transform(spec, 3).blocks] == [("s1", 32), ("s2", 16)]


def test_a_stage_out_of_range_is_a_user_error() -> None:
    with pytest.raises(NestError) as caught:
        oracle(nestdsl.load(SPECS / "digits_width.nest"), 4)
    assert "[T005]" in caught.value.render() and "only 3 stages" in caught.value.render()


def test_oracle_refuses_specs_of_user_units() -> None:
    spec = nestdsl.load(SPECS / "digits_mobilenet_width.nest")
    with pytest.raises(NestError) as caught:
        oracle_source(spec, 1)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "T017"
    assert "block `stem` uses unit `conv_bn`" in diagnostic.message
    assert diagnostic.span is not None and diagnostic.span.line > 0
