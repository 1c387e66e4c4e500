"""Row layouts of the stripe view for depth levels, width-depth growth and cascades.

The paper draws depth nesting (Figure 3) as rows: the shallow subnetwork's layers on top, the
interlaced layers of each deeper level in the row below at their pipeline position; width-depth
growth (Figures 6-7) the same way with each layer's stripes stacked; a cascade (Figure 2) as
one trunk with its exit branches hanging below it. A :class:`RowLayout` places the diagram's
boxes in such a grid: columns in pipeline order, one row per depth level (or trunk, exits and
their heads). Repetition is folded per row: the first long block shows one period of the
interlacing, after which each block's remaining units of one stage are one "× n" box, so
every level (or cascade segment) reads as one box per block. Edges stay layer to layer (the
paper's simplification), merged onto boxes; long skips show in the pattern only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from nestdsl.draw.nodes import Box, Edge, pattern_length, unit_boxes, unit_key
from nestdsl.draw.syntax import attrs, quote
from nestdsl.ir.model import NestIR


@dataclass
class Column:
    """One pipeline position: the box id in each row (None where the row is empty)."""

    cells: list[str | None]
    group: tuple[str, ...] = ()
    """Boxes side by side in one column share a group (a block's transitions or folds)."""


@dataclass
class RowLayout:
    """Where each box of a row view sits: grid columns, a cell per row."""

    boxes: list[Box]
    rows: tuple[str, ...]
    """A name per row, shown at its left (`level 2 · d2`, `trunk`)."""
    columns: list[Column] = field(default_factory=list)


def _fold(block: list[Box]) -> list[Box]:
    """A block's unit boxes after the shown pattern, one "× n" box per stage (a depth level
    or a cascade segment); a stage with a single unit there keeps its box."""
    by_stage: dict[int, list[Box]] = {}
    for box in block:
        by_stage.setdefault(box.output.stage, []).append(box)
    folded = []
    for group in by_stage.values():
        if len(group) == 1:
            folded.extend(group)
            continue
        members = tuple(member for box in group for member in box.members)
        first, last = unit_key(group[0].layers[0]), unit_key(group[-1].layers[0])
        assert first is not None and last is not None
        box_id = f"{first[0]}.{first[1]}-{last[1]}"
        last_id = f"{last[0]}.{last[1]}"
        folded.append(Box(box_id, group[0].layers, members, len(group), last_id, short=True))
    return sorted(folded, key=lambda box: box.layers[0].position)


def _unit_block(box: Box) -> str | None:
    """The block of a repeated unit's box; None for the stem, transitions, exits, heads."""
    return box.block if unit_key(box.layers[0]) is not None else None


def row_boxes(ir: NestIR) -> list[Box]:
    """One box per unit (stem and its pooling as one), each block's units after the first
    pattern folded per stage (:func:`_fold`). The first block longer than the pattern
    (:func:`~nestdsl.draw.nodes.pattern_length`) shows it; shorter blocks are drawn whole."""
    keep = pattern_length(ir)
    drawn: list[Box] = []
    shown = False
    for block, group in itertools.groupby(unit_boxes(ir), key=_unit_block):
        units = list(group)
        if block is None:
            drawn.extend(units)
            continue
        whole = len(units) <= keep
        cut = len(units) if whole else 0 if shown else keep
        shown = shown or not whole
        drawn.extend(units[:cut] + _fold(units[cut:]))
    return drawn


def _group(box: Box) -> tuple[str, ...]:
    """Boxes that may share a column: a block's transitions, a block's folded levels."""
    if box.block is not None and box.output.part == "transition":
        return ("transition", box.block)
    if box.repeat > 1:
        return ("fold", box.block or "")
    return ()


def _place(layout: RowLayout, box: Box, row: int) -> None:
    """Into the last column when it holds the box's group and the row is free, else a new one."""
    last = layout.columns[-1] if layout.columns else None
    group = _group(box)
    if last is not None and group and last.group == group and last.cells[row] is None:
        last.cells[row] = box.id
        return
    cells: list[str | None] = [None] * len(layout.rows)
    cells[row] = box.id
    layout.columns.append(Column(cells, group))


def _level_names(ir: NestIR) -> tuple[str, ...]:
    """`level ℓ · label`: each depth level with the stage that introduces it."""
    first: dict[int, int] = {}
    for layer in ir.layers.values():
        if layer.op != "head":
            first[layer.level] = min(first.get(layer.level, layer.stage), layer.stage)
    return tuple(f"level {level} · {ir.stage_labels[first[level] - 1]}" for level in sorted(first))


def depth_layout(ir: NestIR) -> RowLayout:
    """Figure 3 (and 6-7 with stripes): a row per depth level, level 1 on top; each level's
    transitions and folds side by side in one column; each head at the right in the row of
    the level it reads (heads of width-only stages step to the right)."""
    layout = RowLayout(row_boxes(ir), _level_names(ir))
    heads = [box for box in layout.boxes if box.output.op == "head"]
    for box in layout.boxes:
        if box.output.op != "head":
            _place(layout, box, box.output.level - 1)
    start = len(layout.columns)
    for box in heads:
        row = max(ir.layers[source].level for source in box.output.inputs) - 1
        free = (c for c in layout.columns[start:] if c.cells[row] is None)
        column = next(free, None)
        if column is None:
            column = Column([None] * len(layout.rows), ("head",))
            layout.columns.append(column)
        column.cells[row] = box.id
    return layout


CASCADE_ROWS = ("trunk", "exits", "")


def cascade_layout(ir: NestIR) -> RowLayout:
    """Figure 2: the trunk in the top row, each exit hanging below the trunk box it reads
    and its head below it (a second exit reading the same box gets the next column); the
    last head at the trunk's end."""
    layout = RowLayout(row_boxes(ir), CASCADE_ROWS)
    owner = {member: box.id for box in layout.boxes for member in box.members}
    branch_heads = {
        box.output.inputs[0]: box.id
        for box in layout.boxes
        if box.output.op == "head" and ir.layers[box.output.inputs[0]].part == "exit"
    }
    for box in layout.boxes:
        if box.output.part != "exit" and box.id not in branch_heads.values():
            _place(layout, box, 0)
    for box in layout.boxes:
        if box.output.part != "exit":
            continue
        source = owner[box.output.inputs[0]]
        index = next(i for i, c in enumerate(layout.columns) if source in c.cells)
        if layout.columns[index].cells[1] is not None:
            index += 1
            layout.columns.insert(index, Column([None] * len(CASCADE_ROWS)))
        layout.columns[index].cells[1:] = [box.id, branch_heads.get(box.output.id)]
    return layout


Variant = Literal["width", "depth", "width_depth", "cascade", "none"]


def stripe_variant(ir: NestIR) -> Variant:
    """Which stripe view explains the schedule: `cascade` (exits), `depth` or `width_depth`
    (several depth levels, without or with stripes), `width` (stripes only), or `none` for a
    network without nesting (one stripe per layer, one level), drawn as the block view."""
    layers = [layer for layer in ir.layers.values() if layer.op != "head"]
    if any(layer.part == "exit" for layer in layers):
        return "cascade"
    widened = any(len(layer.stripes) > 1 for layer in layers)
    if max(layer.level for layer in layers) > 1:
        return "width_depth" if widened else "depth"
    return "width" if widened else "none"


LAYOUTS: Mapping[str, Callable[[NestIR], RowLayout]] = {
    "depth": depth_layout,
    "width_depth": depth_layout,
    "cascade": cascade_layout,
}
"""Stripe-view variant → its row layout (the width variant draws unit edges instead)."""


LONG_SKIP = 2
"""Input rank from which a connection is a long skip (distance 4 and more in SparseNet)."""


def shown_edges(layout: RowLayout, found: list[Edge]) -> list[Edge]:
    """The edges a row view draws: long skips only between boxes of single units, so the
    pattern shows them once and the folds ("× n") read like the paper's figures, where
    "connections across intermediate layers are hidden" (Figures 6-7)."""
    folded = {box.id for box in layout.boxes if box.repeat > 1}
    return [
        edge for edge in found if edge.skip < LONG_SKIP or not {edge.source, edge.target} & folded
    ]


PLACEHOLDER: Mapping[str, str] = {
    "style": "invis",
    "label": "",
    "shape": "point",
    "width": "0.1",
    "height": "0.1",
}
"""An empty grid cell: keeps its row's chain straight where the row has no box."""
ROW_CHAIN: Mapping[str, str] = {"style": "invis", "weight": "10"}
ROW_NAME: Mapping[str, str] = {"shape": "plaintext", "fontsize": "9", "fontcolor": "#707070"}


def _cell_ids(layout: RowLayout) -> list[list[str]]:
    """Every grid cell's node id, a row-name column first; empty cells get a placeholder id
    (`#c3.r1`: `#` never starts a layer id, so they cannot collide)."""
    names = [[f"#row{r}" for r in range(len(layout.rows))]]
    return names + [
        [cell or f"#c{c}.r{r}" for r, cell in enumerate(column.cells)]
        for c, column in enumerate(layout.columns)
    ]


def grid_lines(layout: RowLayout) -> list[str]:
    """The DOT that holds the grid: row names, placeholders, each column one rank with its
    rows in order (invisible flat edges), each row an invisible weighted chain kept straight
    by a `group`."""
    grid = _cell_ids(layout)
    lines = [
        f"  {quote(f'#row{r}')} {attrs({**ROW_NAME, 'label': name})};"
        for r, name in enumerate(layout.rows)
    ]
    for column in grid:
        for r, cell in enumerate(column):
            extra = PLACEHOLDER if cell.startswith("#c") else {}
            lines.append(f"  {quote(cell)} {attrs({**extra, 'group': f'row{r}'})};")
        lines.append(f"  {{rank=same; {' -> '.join(map(quote, column))} {attrs(ROW_CHAIN)};}}")
    for r in range(len(layout.rows)):
        lines.append(f"  {' -> '.join(quote(c[r]) for c in grid)} {attrs(ROW_CHAIN)};")
    return lines
