"""What is drawn: layers (or collapsed runs of repeated units) and the edges between them.

A diagram node is a :class:`Box`: one layer, or a run of identical repeated units of a block
drawn once with "× n". Runs are found here so that the DOT writer only formats boxes.
A unit defined in the spec is one node in the collapsed (block) view. Collapsing never hides
nesting: the units of a run must agree on every layer's op, shape and
unit stages, and only residual units and plain layers collapse (sparse layers differ in their
skip connections, and depth-interlaced layers are the point of the picture).
"""

from __future__ import annotations

from dataclasses import dataclass

from nestdsl.ast import BLOCK_KINDS
from nestdsl.ir.model import Layer, NestIR

Unit = tuple[Layer, ...]
"""The layers of one repeated unit of a block: a residual unit, or one plain/sparse layer."""


@dataclass(frozen=True)
class Box:
    """One diagram node: the layers it describes and every layer id it stands for."""

    id: str
    layers: Unit
    """The layers described (a collapsed run describes its first unit)."""
    members: tuple[str, ...]
    """All layer ids drawn by this box (every unit of a run)."""
    repeat: int = 1
    last: str = ""
    """The run's last unit (`s1.4` for the run s1.2 … s1.4); empty when not collapsed."""

    @property
    def output(self) -> Layer:
        """The layer whose stripes the box shows: the unit's last layer (its output)."""
        return self.layers[-1]

    @property
    def block(self) -> str | None:
        return self.layers[0].block


@dataclass(frozen=True)
class Edge:
    """A kept layer-to-layer connection; ``skip`` is the input's rank (0 = direct input).

    Inputs are listed nearest first by the IR builder (SparseNet: distances 1, 2, 4 …;
    residual: main path, then shortcut), so the rank measures how far the connection reaches.
    """

    source: str
    target: str
    skip: int


def unit_key(layer: Layer) -> tuple[str, int, str] | None:
    """(block, position, part) for layers of repeated units (`s1.3.conv1`, `s1.3`), else None."""
    if layer.block is None or not layer.position:
        return None
    return layer.block, layer.position, layer.part


def _signature(unit: Unit) -> tuple[tuple[object, ...], ...]:
    """Everything two units must share to be drawn as one: ops, shapes, stages, fan-in."""
    return tuple(
        (
            layer.block,
            (unit_key(layer) or ("", 0, ""))[2],
            layer.op,
            layer.kernel,
            layer.stride,
            layer.stripes,
            layer.stripe_stages,
            layer.stage,
            layer.level,
            layer.relu,
            layer.agg,
            len(layer.inputs),
        )
        for layer in unit
    )


def _user_unit(unit: Unit) -> bool:
    """The layers of one instance of a unit defined in the spec (drawn as one node)."""
    return unit[0].position > 0 and unit[0].unit not in BLOCK_KINDS


def _collapsible(unit: Unit) -> bool:
    """Residual units (ending in an add), user units and single-input plain layers collapse."""
    if unit[-1].op == "add" or _user_unit(unit):
        return True
    return len(unit) == 1 and unit[0].op == "conv" and len(unit[0].inputs) == 1


def _follows(previous: Unit, unit: Unit) -> bool:
    """The unit reads only the previous unit's output and itself (a chain of repeats)."""
    inside = {layer.id for layer in unit} | {previous[-1].id}
    return all(source in inside for layer in unit for source in layer.inputs)


def _units(ir: NestIR) -> list[Unit]:
    """Layers grouped into repeated units; other layers (stem, transitions, heads) alone."""
    units: list[list[Layer]] = []
    previous: tuple[str, int] | None = None
    for layer in ir.layers.values():
        key = unit_key(layer)
        here = None if key is None else key[:2]
        if here is not None and here == previous:
            units[-1].append(layer)
        else:
            units.append([layer])
        previous = here
    return [tuple(unit) for unit in units]


def _runs(units: list[Unit]) -> list[list[Unit]]:
    """Maximal runs of consecutive identical, chained, collapsible units."""
    runs: list[list[Unit]] = []
    for unit in units:
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and _collapsible(unit)
            and _collapsible(last)
            and unit_key(unit[0]) is not None
            and unit_key(last[0]) is not None
            and _signature(last) == _signature(unit)
            and _follows(last, unit)
        ):
            runs[-1].append(unit)
        else:
            runs.append([unit])
    return runs


def boxes(ir: NestIR, *, collapse: bool) -> list[Box]:
    """The diagram's nodes in topological order, runs of repeated units folded if asked."""
    result: list[Box] = []
    for run in _runs(_units(ir)):
        if collapse and len(run) > 1:
            first, last = unit_key(run[0][0]), unit_key(run[-1][0])
            assert first is not None and last is not None
            members = tuple(layer.id for unit in run for layer in unit)
            box_id = f"{first[0]}.{first[1]}-{last[1]}"
            result.append(Box(box_id, run[0], members, len(run), f"{last[0]}.{last[1]}"))
            continue
        for unit in run:
            if collapse and len(unit) > 1 and _user_unit(unit):
                key = unit_key(unit[0])
                assert key is not None
                members = tuple(layer.id for layer in unit)
                result.append(Box(f"{key[0]}.{key[1]}", unit, members))
            else:
                result.extend(Box(layer.id, (layer,), (layer.id,)) for layer in unit)
    return result


def edges(ir: NestIR, drawn: list[Box]) -> list[Edge]:
    """Layer-to-layer edges with at least one kept unit edge, mapped onto boxes.

    Edges inside a box vanish; parallel edges merge, keeping the most direct (lowest rank).
    """
    owner = {member: box.id for box in drawn for member in box.members}
    found: dict[tuple[str, str], int] = {}
    for layer in ir.layers.values():
        kept = {source for unit in layer.units() for source, _ in ir.graph.predecessors(unit)}
        for rank, source in enumerate(layer.inputs):
            pair = (owner[source], owner[layer.id])
            if source in kept and pair[0] != pair[1]:
                found[pair] = min(found.get(pair, rank), rank)
    return [Edge(source, target, skip) for (source, target), skip in found.items()]
