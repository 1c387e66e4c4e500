"""Stripe-view variants: rows per depth level (Figure 3), width-depth (Figures 6-7), cascade
exits under the trunk (Figure 2), and the folded width view of bigger networks (Figure 5)."""

from __future__ import annotations

import re

import pytest
from test_draw import HEADER, SPECS, make_ir

from nestdsl.draw import to_dot
from nestdsl.draw.nodes import width_boxes
from nestdsl.draw.rows import LONG_SKIP, cascade_layout, depth_layout, stripe_variant
from nestdsl.ir import NestIR, build_ir
from nestdsl.load import loads

LONG: dict[str, str] = {
    # Blocks longer than one interlacing period: the pattern is shown once, then folded.
    "depth_long": "block s1 sparse_resnet count=8 channels=8\n"
    "block s2 sparse_resnet count=8 channels=16 stride=2\n"
    "head classes=10\nschedule depth * 2\n",
    "cascade_long": "block s1 sparse_resnet count=8 channels=8\n"
    "block s2 sparse_resnet count=8 channels=16 stride=2\n"
    "head classes=10\nschedule cascade * 2\n",
}


def make_long(name: str) -> NestIR:
    return build_ir(loads(HEADER.format(name=name, stem=8) + LONG[name], f"{name}.nest"))


def node_ids(dot: str) -> list[str]:
    return re.findall(r'^\s*"([^"#][^"]*)" \[label=<', dot, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("width", "width"),
        ("even_width", "width"),
        ("depth", "depth"),
        ("alternating", "width_depth"),
        ("simultaneous", "width_depth"),
        ("cascade", "cascade"),
        ("plain", "none"),
    ],
)
def test_variant_follows_schedule(name: str, variant: str) -> None:
    assert name in SPECS and stripe_variant(make_ir(name)) == variant


@pytest.mark.parametrize("name", ["alternating", "simultaneous"])
def test_golden_width_depth_rows(name: str, golden) -> None:
    golden(f"dot/{name}_stripes.dot", to_dot(make_ir(name), stripes=True))


@pytest.mark.parametrize("name", sorted(LONG))
def test_golden_folded_rows(name: str, golden) -> None:
    golden(f"dot/{name}_stripes.dot", to_dot(make_long(name), stripes=True))


def test_golden_folded_width(golden) -> None:
    """Too many layers to draw by unit: the stem and first unit by unit, then blocks."""
    golden("dot/width_stripes_folded.dot", to_dot(make_ir("width"), stripes=True))


def test_depth_rows_are_levels() -> None:
    """Every box sits in the row of its depth level; heads in the row of the level they
    read; the first long block shows one period, the rest is one fold per level."""
    ir = make_long("depth_long")
    layout = depth_layout(ir)
    where = {cell: r for column in layout.columns for r, cell in enumerate(column.cells)}
    boxes = {box.id: box for box in layout.boxes}
    assert set(where) - {None} == set(boxes)
    for box_id, box in boxes.items():
        reads = [ir.layers[s].level for s in box.output.inputs]
        level = max(reads) if box.output.op == "head" else box.output.level
        assert where[box_id] == level - 1, box_id
    assert {"s1.1", "s1.2", "s1.3", "s1.4"} <= set(boxes)
    assert {"s1.5", "s1.7"} <= set(boxes)  # the only unit of its level after the pattern
    folds = sorted(box.id for box in layout.boxes if box.repeat > 1)
    assert folds == ["s1.6-8", "s2.1-5", "s2.2-8", "s2.3-7"]
    assert len(layout.rows) == 3 and layout.rows[1] == "level 2 · d2"


def test_cascade_exits_hang_under_trunk() -> None:
    ir = make_long("cascade_long")
    layout = cascade_layout(ir)
    owner = {member: box.id for box in layout.boxes for member in box.members}
    for column in layout.columns:
        trunk, exit_id, head = column.cells
        if exit_id is None:
            continue
        assert ir.layers[exit_id].part == "exit" and head is not None
        assert ir.layers[head].inputs == (exit_id,)
        assert owner[ir.layers[exit_id].inputs[0]] == trunk
    assert all(column.cells[0] is not None for column in layout.columns)


def test_long_skips_only_between_single_units() -> None:
    dot = to_dot(make_long("depth_long"), stripes=True)
    folds = {i for i in node_ids(dot) if "-" in i}
    long_style = 'style="dashed", weight="1"'
    for line in dot.splitlines():
        if " -> " in line and long_style in line:
            ends = set(re.findall(r'"([^"]+)"', line.split("[")[0]))
            assert not ends & folds, line
    assert LONG_SKIP == 2


def test_width_view_folds_big_networks_only() -> None:
    small, big = make_ir("even_width"), make_ir("width")
    assert len(width_boxes(small)) == len(small.layers)
    opened = [box.id for box in width_boxes(big) if box.members == (box.id,)]
    assert opened[:5] == ["input", "stem", "s1.1.conv1", "s1.1.conv2", "s1.1.add"]
    assert len(width_boxes(big)) < len(big.layers)


def test_expand_keeps_every_unit_edge() -> None:
    ir = make_ir("alternating")
    dot = to_dot(ir, stripes=True, collapse=False)
    assert dot.count(':"u') // 2 == ir.graph.number_of_edges()
    assert set(node_ids(dot)) == set(ir.layers)


def test_stage_highlight_fades_later_levels() -> None:
    """`--stage 1` on the depth rows: level 1 keeps its colour, later levels grey out."""
    dot = to_dot(make_ir("depth"), stripes=True, stage=1)
    lines = {i: line for line in dot.splitlines() for i in node_ids(line)}
    assert 'bgcolor="#eeeeee"' not in lines["s1.1"]
    assert 'bgcolor="#eeeeee"' in lines["s1.3"] and 'bgcolor="#eeeeee"' in lines["s1.2"]
    assert "D1 (d1) highlighted" in dot
