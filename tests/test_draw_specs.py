"""Every shipped spec's default and stripe diagrams: rendered by the real `dot`, readable.

Issue 12's bar for the default (block) view and the stripe view (`--stripes`): the long side
of the PNG fits about 2,000 px (Graphviz's default 96 dpi) and at most ~150 edges are drawn,
for every spec in specs/.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import pytest
from spec_helpers import every_spec

from nestdsl.draw import render, to_dot
from nestdsl.ir import build_ir
from nestdsl.load import load

MAX_SIDE_PX = 2000
MAX_EDGES = 150
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def drawn_edges(dot: str) -> int:
    """Edges a reader sees: every `->` line but the invisible ones that only order ranks."""
    return sum(1 for line in dot.splitlines() if " -> " in line and 'style="invis"' not in line)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def spec_id(path: Path) -> str:
    return path.stem


@pytest.mark.parametrize("spec", every_spec(), ids=spec_id)
def test_default_view_edge_budget(spec: Path) -> None:
    ir = build_ir(load(spec))
    folded, expanded = to_dot(ir), to_dot(ir, collapse=False)
    assert drawn_edges(folded) <= MAX_EDGES
    ids = re.findall(r'^\s*"([^"]+)" \[label=', folded, flags=re.MULTILINE)
    assert len(ids) == len(set(ids))  # one node per box, ids never collide
    # --expand keeps every layer: one node per layer
    assert len(re.findall(r'^\s*"[^"]+" \[label=', expanded, flags=re.MULTILINE)) == len(ir.layers)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
@pytest.mark.parametrize("spec", every_spec(), ids=spec_id)
def test_default_view_renders_within_size(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{spec.stem}.png"
    render(to_dot(build_ir(load(spec))), out)
    assert max(png_size(out)) <= MAX_SIDE_PX, png_size(out)


@pytest.mark.parametrize("spec", every_spec(), ids=spec_id)
def test_stripe_view_edge_budget(spec: Path) -> None:
    """`--stripes` picks the view for the schedule and folds it to the same budget."""
    assert drawn_edges(to_dot(build_ir(load(spec)), stripes=True)) <= MAX_EDGES


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
@pytest.mark.parametrize("spec", every_spec(), ids=spec_id)
def test_stripe_view_renders_within_size(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{spec.stem}.png"
    render(to_dot(build_ir(load(spec)), stripes=True), out)
    assert max(png_size(out)) <= MAX_SIDE_PX, png_size(out)
