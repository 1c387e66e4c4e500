"""Diagrams: golden DOT per nesting kind, rendering through Graphviz, and its failure modes."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest

from nestdsl.cost import stage_costs
from nestdsl.diagnostics import NestError
from nestdsl.draw import render, to_dot
from nestdsl.ir import NestIR, build_ir
from nestdsl.load import loads

HEADER = """nest 1
network {name}
input shape=(3, 8, 8)
stem conv channels={stem}
"""
HEAD = "head classes=10\n"
STEM = {"even_width": 12}
"""Stem width when 8 does not split into the schedule's stripes."""

SPECS: dict[str, str] = {
    # ResNet blocks: a projection unit, then identical units that collapse into "× n".
    "width": "block s1 basic count=3 channels=8\n"
    "block s2 basic count=2 channels=16 stride=2\n" + HEAD + "schedule width * 2\n",
    "even_width": "block s1 basic count=2 channels=12\n" + HEAD + "schedule even_width * 2\n",
    "depth": "block s1 sparse_resnet count=4 channels=8\n"
    "block s2 sparse_resnet count=4 channels=16 stride=2\n" + HEAD + "schedule depth * 2\n",
    "alternating": "block s1 sparse_resnet count=2 channels=8\n"
    "block s2 sparse_resnet count=2 channels=16 stride=2\n" + HEAD + "schedule width depth width\n",
    "simultaneous": "block s1 sparse_resnet count=4 channels=12\n"
    + HEAD
    + "schedule (width + depth) * 2\n",
    "cascade": "block s1 sparse_resnet count=4 channels=8\n"
    "block s2 sparse_resnet count=4 channels=16 stride=2\n" + HEAD + "schedule cascade * 2\n",
    "plain": "block s1 plain count=3 channels=8\n"
    "block s2 basic count=3 channels=16 stride=2\n" + HEAD,
}


def make_ir(name: str) -> NestIR:
    return build_ir(
        loads(HEADER.format(name=name, stem=STEM.get(name, 8)) + SPECS[name], f"{name}.nest")
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_golden_dot(name: str, golden) -> None:
    golden(f"dot/{name}.dot", to_dot(make_ir(name)))


def test_golden_dot_expanded(golden) -> None:
    golden("dot/width_expanded.dot", to_dot(make_ir("width"), collapse=False, title="expanded"))


def test_deterministic() -> None:
    assert to_dot(make_ir("depth")) == to_dot(make_ir("depth"))


def node_ids(dot: str) -> set[str]:
    return set(re.findall(r'^\s*"([^"]+)" \[label=', dot, flags=re.MULTILINE))


def test_collapse_folds_identical_units_only() -> None:
    ir = make_ir("width")
    folded, expanded = node_ids(to_dot(ir)), node_ids(to_dot(ir, collapse=False))
    assert "s1.1-3" in folded and "s1.1 … s1.3 × 3" in to_dot(ir)  # identity units of s1
    # s2 is a chain: one box for the block, noting how its projection unit differs
    assert "s2.1-2" in folded and "first unit: /2 +1 layer" in to_dot(ir)
    assert not any(i.startswith(("s1.2", "s2.1.")) for i in folded)
    assert {"s1.2.conv1", "s1.3.add"} <= expanded and not any("-" in i for i in expanded)


def test_no_collapse_across_stages_or_sparse_layers() -> None:
    for name in ("depth", "cascade", "simultaneous", "alternating"):
        dot = to_dot(make_ir(name))
        assert "×" not in "".join(re.findall(r"<b>([^<]*)</b>", dot)), name


def test_every_layer_and_head_drawn() -> None:
    ir = make_ir("depth")
    ids = node_ids(to_dot(ir))
    assert set(ir.layers) == ids
    dot = to_dot(ir)
    for k, label in enumerate(ir.stage_labels, start=1):
        assert f"stage {k} ({label})" in dot


def test_stage_colours_distinct() -> None:
    for name in SPECS:
        dot = to_dot(make_ir(name))
        legend = re.findall(r'<td bgcolor="(#[0-9a-f]{6})"><font', dot.splitlines()[1])
        assert len(legend) == make_ir(name).num_stages == len(set(legend)), name


def test_skip_edges_dashed() -> None:
    dot = to_dot(make_ir("depth"))
    assert '"stem" -> "s1.2" [color="#6e6e6e", style="dashed"' in dot  # power-of-2 skip
    assert '"s1.1" -> "s1.3" [color="#303030"' in dot  # direct input at level 2


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(NestError) as error:
        render("digraph {}", tmp_path / "arch.jpeg")
    text = error.value.render()
    assert "`.jpeg`" in text and "`.svg`" in text and "`.dot`" in text


def test_dot_suffix_writes_source(tmp_path: Path) -> None:
    source = to_dot(make_ir("plain"))
    render(source, tmp_path / "arch.gv")
    assert (tmp_path / "arch.gv").read_text(encoding="utf-8") == source


def test_missing_dot_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> bytes:
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", missing)
    with pytest.raises(NestError) as error:
        render(to_dot(make_ir("plain")), tmp_path / "arch.svg")
    text = error.value.render()
    assert "apt-get install graphviz" in text and "brew install graphviz" in text
    assert "-o FILE.dot" in text
    assert not (tmp_path / "arch.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
@pytest.mark.parametrize("name", ["width", "depth", "cascade"])
def test_render_svg(tmp_path: Path, name: str) -> None:
    path = tmp_path / "arch.svg"
    render(to_dot(make_ir(name)), path)
    root = ET.fromstring(path.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = "".join(root.itertext())
    assert "stage 1" in text and "FLOPs (MACs)" in text


def test_golden_stripe_view(golden) -> None:
    """Figure 5: units as cells, kept unit edges, pruned back-edges greyed on request."""
    golden("dot/width_stripes.dot", to_dot(make_ir("even_width"), stripes=True, show_pruned=True))


def test_golden_stage_highlight(golden) -> None:
    golden("dot/alternating_stage2.dot", to_dot(make_ir("alternating"), stage=2))


def unit_edges_drawn(dot: str) -> list[tuple[str, int, str, int, str]]:
    pattern = r'"([^"]+)":"u(\d+)":e -> "([^"]+)":"u(\d+)":w \[color="(#[0-9a-f]{6})"'
    return [(a, int(i), b, int(j), c) for a, i, b, j, c in re.findall(pattern, dot)]


@pytest.mark.parametrize("name", ["even_width", "width"])
def test_stripe_view_keeps_lower_triangle(name: str) -> None:
    """Every kept unit edge between layers drawn by unit, each pruned one greyed; `width`
    has too many layers to draw by unit, so only its stem and first unit are."""
    ir = make_ir(name)
    dot = to_dot(ir, stripes=True, show_pruned=True)
    nodes = set(re.findall(r'^\s*"([^"]+)" \[label=', dot, re.MULTILINE))
    opened = nodes & set(ir.layers)
    drawn = unit_edges_drawn(dot)
    kept = [(a, i, b, j) for a, i, b, j, colour in drawn if colour != "#c8c8c8"]
    pruned = [(a, i, b, j) for a, i, b, j, colour in drawn if colour == "#c8c8c8"]
    expected = [(a, b) for a, b in ir.graph.edges if {a[0], b[0]} <= opened]
    assert len(kept) == len(expected) > 0
    assert (len(opened) < len(ir.layers)) == (name == "width")
    assert pruned and all(ir.stage((a, i)) > ir.stage((b, j)) for a, i, b, j in pruned)
    assert all(ir.stage((a, i)) <= ir.stage((b, j)) for a, i, b, j in kept)
    assert not any(colour == "#c8c8c8" for *_, colour in unit_edges_drawn(to_dot(ir, stripes=True)))


def test_stripes_automatic_for_small_width_specs_only() -> None:
    assert unit_edges_drawn(to_dot(make_ir("even_width")))  # small and width-nested
    assert not unit_edges_drawn(to_dot(make_ir("depth")))  # one stripe per layer
    assert not unit_edges_drawn(to_dot(make_ir("width"), stripes=False))


def test_stage_highlight_fades_later_stages() -> None:
    ir = make_ir("width")
    dot = to_dot(ir, stage=1, stripes=False)
    assert "D1 (w1) highlighted" in dot and "<b>stage 1 (w1)</b>" in dot
    head3 = next(line for line in dot.splitlines() if line.strip().startswith('"head3"'))
    assert 'bgcolor="#eeeeee"' in head3  # faded
    assert 'bgcolor="#eeeeee"' not in to_dot(ir, stripes=False)


def test_stage_out_of_range() -> None:
    with pytest.raises(NestError) as error:
        to_dot(make_ir("width"), stage=4)
    assert [d.code for d in error.value.diagnostics] == ["E906"]


def test_legend_lists_stage_costs() -> None:
    ir = make_ir("depth")
    costs = stage_costs(ir)
    legend = to_dot(ir).splitlines()[1]
    assert "<b>stage" not in legend  # bold marks a highlighted stage only
    for cost in costs:
        assert f"stage {cost.stage} ({cost.label})" in legend
    assert costs[-1].flops > costs[0].flops and "FLOPs (MACs)" in legend


def test_user_unit_one_node_opened_by_expand() -> None:
    spec = """nest 2
network units
input shape=(3, 8, 8)
unit pair out
  conv channels=out kernel=3
  conv channels=out kernel=1
end
stem conv channels=8
block s1 pair count=2 out=8 connect=sparse
head classes=10
"""
    ir = build_ir(loads(spec, "units.nest"))
    folded, expanded = node_ids(to_dot(ir)), node_ids(to_dot(ir, collapse=False))
    assert {"s1.1", "s1.2"} <= folded and not any(i.count(".") > 1 for i in folded)
    assert len([i for i in expanded if i.startswith("s1.")]) == 4
