"""The zoo (specs/zoo/) and the IR invariants every shipped spec must keep.

Parameter counts are torchvision's, compared on the cost model (no 138M-parameter module is
built); FLOPs are the multiply-accumulates at 224x224 that the literature quotes.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from spec_helpers import SPECS, every_spec

import nestdsl
from nestdsl.draw.nodes import boxes
from nestdsl.ir import Limits

TORCHVISION = {
    "vgg16_bn": (138_365_992, 15_470_264_320),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "densenet121": (7_978_856, 2_834_161_664),
    "wide_resnet50_2": (68_883_240, 11_398_021_120),
    "resnet34": (21_797_672, 3_663_761_408),
    "mobilenet_v3_small": (2_542_856, 56_510_400),
    "efficientnet_b0": (5_288_548, 385_814_752),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_zoo_matches_torchvision(name: str) -> None:
    ir = nestdsl.build_ir(nestdsl.load(SPECS / "zoo" / f"{name}.nest"))
    (cost,) = nestdsl.stage_costs(ir)
    assert (cost.params, cost.flops) == TORCHVISION[name]


@pytest.mark.parametrize("path", every_spec(), ids=lambda p: p.stem)
def test_no_dead_units(path: Path) -> None:
    """Every unit of D_k contributes to output k. The one exception is by design: an EANN
    exit branch (part `exit`) feeds only its own, earlier output."""
    ir = nestdsl.build_ir(nestdsl.load(path))
    heads = set(ir.heads)
    for k, head in enumerate(ir.heads, start=1):
        reaching = nx.ancestors(ir.graph, (head, 0))
        for unit in ir.graph:
            layer = ir.layers[unit[0]]
            if layer.id in heads or ir.stage(unit) > k:
                continue
            if layer.part == "exit":
                own = ir.heads[ir.stage(unit) - 1]
                assert unit in nx.ancestors(ir.graph, (own, 0)), unit
            else:
                assert unit in reaching, (k, unit)


def test_user_units_lower_like_builtin_kinds() -> None:
    """`conv`, `bn`, `relu` fuse into the one layer a built-in kind makes: same counts."""
    builtin = nestdsl.build_ir(nestdsl.load(SPECS / "zoo" / "resnet34.nest"))
    text = (SPECS / "zoo" / "resnet34.nest").read_text().replace("nest 1", "nest 2", 1)
    units = """
unit basic2 out stride=1 shortcut=projection post=relu
  conv channels=out stride=stride
  bn
  relu
  conv channels=out
  bn
end
"""
    for kind in ("s1", "s2", "s3", "s4"):
        text = text.replace(f"block    {kind} basic", f"block    {kind} basic2")
    text = text.replace("channels=", "out=").replace("stem     conv out=", "stem conv channels=")
    user = nestdsl.build_ir(nestdsl.loads(text + units, "resnet34_units.nest"))
    assert [c.params for c in nestdsl.stage_costs(user)] == [
        c.params for c in nestdsl.stage_costs(builtin)
    ]
    assert [c.flops for c in nestdsl.stage_costs(user)] == [
        c.flops for c in nestdsl.stage_costs(builtin)
    ]
    assert len(user.layers) == len(builtin.layers)


def test_block_view_draws_a_user_unit_as_one_node() -> None:
    """Each unit instance is one node (a run of identical chained units, or a block that is
    one chain of a unit kind, one "× n" node); single-layer units stay one layer."""
    ir = nestdsl.build_ir(nestdsl.load(SPECS / "digits_mobilenet_width.nest"))
    drawn = [(box.id, box.repeat, len(box.members)) for box in boxes(ir, collapse=True)]
    assert drawn[1:5] == [
        ("stem.1", 1, 1),
        ("b1.1-2", 2, 8),
        ("b2.1-2", 2, 7),
        ("last.1", 1, 1),
    ]


def test_dump_shows_the_layers_of_user_units(golden) -> None:
    """`--emit ir` of a width-nested spec of units: every unit layer, its stripes' stages and
    kept inputs (depthwise convolutions read their own stripe only)."""
    ir = nestdsl.build_ir(nestdsl.load(SPECS / "digits_mobilenet_width.nest"))
    golden("ir/digits_mobilenet_width.txt", nestdsl.dump_ir(ir))


@pytest.mark.parametrize("path", every_spec(), ids=lambda p: p.stem)
def test_kept_width_counts_the_kept_channels(path: Path) -> None:
    """The cost model's arithmetic on stripe widths equals listing the kept channels."""
    ir = nestdsl.build_ir(nestdsl.load(path))
    for unit in ir.graph:
        if ir.layers[unit[0]].inputs:
            assert ir.kept_width(unit) == len(ir.kept_channels(unit)), unit


def test_resource_limits_are_positioned_errors_that_can_be_raised() -> None:
    """Sizes are checked while lowering, before any tensor exists; limits can be raised."""
    spec = nestdsl.load(SPECS / "resnet50.nest")
    with pytest.raises(nestdsl.NestError) as info:
        nestdsl.build_ir(spec, Limits(max_params=25_000_000))
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E501" and diagnostic.span is not None
    assert "resnet50.nest:12:" in info.value.render()  # the head crosses it (2M weights)
    with pytest.raises(nestdsl.NestError):
        nestdsl.load(SPECS / "resnet50.nest", Limits(max_layers=50))
    assert nestdsl.build_ir(spec, Limits(max_params=26_000_000)).num_stages == 1
