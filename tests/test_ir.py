"""The graph IR: stages of units, the pruning rule, interlaced depth, aligned connections."""

from __future__ import annotations

import pytest
from spec_helpers import small_spec

import nestdsl
from nestdsl.ir.builder import _introducing_level
from nestdsl.ir.builder import sparse_sources as _sparse_sources


def test_width_stripes_follow_power_of_two_schedule() -> None:
    ir = nestdsl.build_ir(small_spec([("basic", 1, 16, 1)], "width * 2", stem=16))
    stem = ir.layers["stem"]
    assert stem.stripes == (4, 4, 8)
    assert stem.stripe_stages == (1, 2, 3)
    assert ir.stage_labels == ("w1", "w2", "w4")


def test_even_width_stripes_are_equal() -> None:
    ir = nestdsl.build_ir(small_spec([("basic", 1, 12, 1)], "even_width * 2", stem=12))
    assert ir.layers["b1.1.conv1"].stripes == (4, 4, 4)
    assert ir.stage_labels == ("w1", "w2", "w3")


def test_edges_keep_only_stage_non_decreasing_connections() -> None:
    ir = nestdsl.build_ir(small_spec([("basic", 2, 16, 2)], "width * 2", stem=16))
    for src, dst in ir.graph.edges:
        assert ir.stage(src) <= ir.stage(dst)
    # every pruned pair of a dense layer is a back-edge from a later stripe
    conv = ir.layers["b1.1.conv2"]
    source = ir.layers["b1.1.conv1"]
    for j in range(len(conv.stripes)):
        for i in range(len(source.stripes)):
            kept = ir.graph.has_edge((source.id, i), (conv.id, j))
            assert kept == (source.stripe_stages[i] <= conv.stripe_stages[j])


def test_channelwise_ops_connect_matching_stripes_only() -> None:
    ir = nestdsl.build_ir(small_spec([("basic", 1, 16, 1)], "width * 2", stem=16))
    sources = [src for src, _ in ir.graph.in_edges(("b1.1.add", 1))]
    assert len(sources) >= 2  # the residual sum: the block input and the second conv
    assert all(src[1] == 1 for src in sources)


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (2, {1: [1, 3, 5, 7], 2: [2, 4, 6, 8]}),
        (3, {1: [1, 5], 2: [3, 7], 3: [2, 4, 6, 8]}),
    ],
)
def test_depth_levels_interlace(levels: int, expected: dict[int, list[int]]) -> None:
    found: dict[int, list[int]] = {}
    for position in range(1, 9):
        found.setdefault(_introducing_level(position, levels), []).append(position)
    assert found == expected


def test_sparse_sources_are_power_of_two_distances() -> None:
    assert _sparse_sources(1) == [0]
    assert _sparse_sources(6) == [5, 4, 2]
    assert _sparse_sources(8) == [7, 6, 4, 0]


def test_aligned_connections_use_the_introducing_levels_indexing() -> None:
    spec = small_spec([("sparse_resnet", 8, 8, 1)], "depth * 2")
    ir = nestdsl.build_ir(spec)
    # 3 levels, 8 layers: level 1 = {1, 5}, level 2 = {3, 7}, level 3 = the rest.
    inputs = {p: ir.layers[f"b1.{p}"].inputs for p in range(1, 9)}
    assert inputs[5] == ("b1.1", "stem")  # level-1 index 2: distances 1, 2
    assert inputs[3] == ("b1.1", "stem")  # level-2 index 2 (layers 1, 3, 5, 7)
    assert inputs[7] == ("b1.5", "b1.3", "stem")  # level-2 index 4: distances 1, 2, 4
    assert inputs[8] == ("b1.7", "b1.6", "b1.4", "stem")  # level 3: plain SparseNet rule
    stages = {p: ir.layers[f"b1.{p}"].stage for p in range(1, 9)}
    assert stages == {1: 1, 2: 3, 3: 2, 4: 3, 5: 1, 6: 3, 7: 2, 8: 3}


def test_each_depth_level_has_its_own_transition_and_output() -> None:
    spec = small_spec([("sparse_resnet", 4, 8, 1), ("sparse_resnet", 4, 16, 2)], "depth * 2")
    ir = nestdsl.build_ir(spec)
    transitions = [layer for layer in ir.layers.values() if ".trans" in layer.id]
    assert [t.id for t in transitions] == ["b2.trans1", "b2.trans2", "b2.trans3"]
    assert [t.stage for t in transitions] == [1, 2, 3]
    # Level 1 holds layers 1 and 3 of block 1 (every 2nd); its output aggregates position 3.
    assert ir.layers["b2.trans1"].inputs == ("b1.1", "stem")
    assert ir.layers["b2.trans3"].inputs == ("b1.4", "b1.3", "b1.1")
    # Stage 1's head reads level 1's block output: its one layer plus its block input.
    assert ir.layers["head1"].inputs == ("b2.1", "b2.trans1")
    assert ir.layers["head3"].inputs == ("b2.4", "b2.3", "b2.1")


def test_cascade_exits_at_doubling_positions() -> None:
    spec = small_spec([("sparse_resnet", 8, 8, 1)], "cascade * 3")
    ir = nestdsl.build_ir(spec)
    assert [ir.layers[f"b1.{p}"].stage for p in range(1, 9)] == [1, 2, 3, 3, 4, 4, 4, 4]
    assert [layer for layer in ir.layers if layer.startswith("exit")] == ["exit1", "exit2", "exit3"]
    assert ir.stage_labels == ("d1", "d2", "d4", "d8")


def test_restrict_keeps_units_of_earlier_stages_and_own_head() -> None:
    ir = nestdsl.build_ir(small_spec([("basic", 1, 16, 1)], "width * 2", stem=16))
    d2 = ir.restrict(2)
    assert d2.heads == ("head2",)
    assert "head1" not in d2.layers and "head3" not in d2.layers
    assert d2.layers["stem"].stripes == (4, 4)
    assert all(ir.stage(u) <= 2 for u in d2.graph)


def test_plain_resnet50_has_torchvisions_parameter_count(specs_dir) -> None:
    ir = nestdsl.build_ir(nestdsl.load(specs_dir / "resnet50.nest"))
    (cost,) = nestdsl.stage_costs(ir)
    assert cost.params == 25_557_032
    assert cost.flops == 4_089_184_256  # multiply-accumulates at 224x224


def test_dump_is_stable(golden) -> None:
    spec = small_spec([("sparse_resnet", 4, 8, 1), ("sparse_resnet", 4, 8, 2)], "(width, depth)")
    golden("ir/small_width_depth.txt", nestdsl.dump_ir(nestdsl.build_ir(spec)))
