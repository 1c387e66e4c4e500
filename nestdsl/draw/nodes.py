"""What is drawn: boxes (layers, units, runs, whole blocks, folds) and the edges between them.

A diagram node is a :class:`Box`. The block view (``collapse``) folds repeated structure so
that any network stays readable: a unit of several layers is one box (a unit defined in the
spec too), a run of identical chained units one "× n" box, a block that is one chain of a
unit kind one box, and a long sparse/dense block shows one period of its depth interlacing
before a folded box that lists the stages it holds. Runs only join units that agree on every
layer's op, shape and unit stages, so folding never hides where a stage begins; a folded
stretch shows its stages as cells. The expanded view draws one box per layer; the stripe
view adds the unit-to-unit edges (:func:`unit_edges`), kept or pruned. Boxes are found from
the layers' structure fields (block, position, part, unit), never from their ids.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from nestdsl.ast import BLOCK_KINDS
from nestdsl.ir.model import Layer, NestIR, UnitId

FOLD_KEEP = 4
"""Units of a long block always shown before the fold."""
FOLD_MIN = 2
"""Fewer units than this are drawn rather than folded."""

STEM_PARTS: dict[str, tuple[str, int]] = {"stem": ("stem", 0), "pool": ("stem", 0)}
"""Layers outside units that the block view draws as one box (the stem and its pooling)."""

STRIPES_MAX_LAYERS = 16
STRIPES_MAX_EDGES = 150
"""Up to these sizes a width-nested network is drawn by unit (stripe view) by default."""
OPEN_LAYERS = 8
"""A bigger width-nested network's stripe view draws about this many layers by unit."""

Unit = tuple[Layer, ...]
"""The layers of one repeated unit of a block: a residual unit, or one plain/sparse layer."""


@dataclass(frozen=True)
class Box:
    """One diagram node: the layers it describes and every layer id it stands for."""

    id: str
    layers: Unit
    """The layers described (a run or fold its first unit, a whole block its last)."""
    members: tuple[str, ...]
    """All layer ids drawn by this box (every unit of a run)."""
    repeat: int = 1
    """How many units the box stands for (1 for a layer or a single unit)."""
    last: str = ""
    """The last unit drawn by a run, block or fold (`s1.4` for s1.2 … s1.4); else empty."""
    lead: Unit = ()
    """A whole chain block: its first unit (which may differ by stride or projection)."""
    short: bool = False
    """Title a run compactly (`s1.9–25 × 3`): the row views put many of them in a row."""
    folded: bool = False
    """A folded stretch of a long block: its units differ (stages, skips), so the box shows
    the stages it holds rather than one unit's stripes."""

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


@dataclass(frozen=True)
class UnitEdge:
    """A unit-to-unit connection of the base network: kept by the stage rule, or pruned."""

    source: UnitId
    target: UnitId
    kept: bool


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
        here = key[:2] if key is not None else STEM_PARTS.get(layer.part)
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


def _unit_boxes(run: list[Unit]) -> list[Box]:
    """A run of several units as one "× n" box; a lone unit as one box; other layers alone."""
    if len(run) > 1:
        first, last = unit_key(run[0][0]), unit_key(run[-1][0])
        assert first is not None and last is not None
        members = tuple(layer.id for unit in run for layer in unit)
        box_id = f"{first[0]}.{first[1]}-{last[1]}"
        return [Box(box_id, run[0], members, len(run), f"{last[0]}.{last[1]}")]
    unit = run[0]
    key = unit_key(unit[0])
    if len(unit) == 1:
        return [Box(unit[0].id, unit, (unit[0].id,))]
    box_id = unit[0].id if key is None else f"{key[0]}.{key[1]}"
    return [Box(box_id, unit, tuple(layer.id for layer in unit))]


def pattern_length(ir: NestIR) -> int:
    """Units of a block shown before folding: one period of the depth interlacing (2^(L-1)
    for L levels: Figure 3's pattern), at least FOLD_KEEP."""
    levels = max(layer.level for layer in ir.layers.values())
    return max(FOLD_KEEP, 2 ** (levels - 1))


def _merge(ir: NestIR, boxes: list[Box], *, whole: bool) -> Box:
    """Consecutive unit boxes of one block as one box. A whole chain block describes its
    repeated (last) unit and notes its first; a fold lists the stages it holds."""
    members = tuple(member for box in boxes for member in box.members)
    block, first = boxes[0].block, boxes[0].layers[0].position
    last = max(ir.layers[member].position for member in members)
    return Box(
        f"{block}.{first}-{last}",
        boxes[-1].layers if whole else boxes[0].layers,
        members,
        last - first + 1,
        f"{block}.{last}",
        lead=boxes[0].layers if whole else (),
        folded=not whole,
    )


def _chain_block(boxes: list[Box]) -> bool:
    """The unit boxes of a block form one chain of units of one kind and one stage pattern
    (ResNet, MobileNet blocks): the block reads as one box "× n"."""
    outputs = [box.output for box in boxes]
    return (
        len(boxes) > 1
        and len({(layer.unit, layer.stripe_stages) for layer in outputs}) == 1
        and all(_follows(a.layers[-1:], b.layers) for a, b in itertools.pairwise(boxes))
    )


def _fold_blocks(ir: NestIR, drawn: list[Box]) -> list[Box]:
    """Chain blocks become one box. Other blocks fold their units into one box, except that
    the first block long enough shows its first pattern (`pattern_length`) before its fold:
    later blocks repeat it. Blocks of at most one pattern are drawn; a fold hides at least
    FOLD_MIN units."""
    keep = pattern_length(ir)
    blocks: dict[str, list[int]] = {}
    for index, box in enumerate(drawn):
        if box.block is not None and unit_key(box.layers[0]) is not None:
            blocks.setdefault(box.block, []).append(index)
    replaced: dict[int, Box] = {}
    hidden: set[int] = set()
    patterned = False
    for indices in blocks.values():
        members = [drawn[i] for i in indices]
        if _chain_block(members):
            replaced[indices[0]] = _merge(ir, members, whole=True)
            hidden.update(indices[1:])
            continue
        if len(indices) <= keep:
            continue
        folded = indices if patterned else indices[keep:]
        patterned = patterned or len(indices) >= keep
        if len(folded) >= FOLD_MIN:
            replaced[folded[0]] = _merge(ir, [drawn[i] for i in folded], whole=False)
            hidden.update(folded[1:])
    return [replaced.get(i, box) for i, box in enumerate(drawn) if i not in hidden]


def unit_boxes(ir: NestIR) -> list[Box]:
    """One box per unit (a unit of several layers, a sparse layer, the stem with its
    pooling) and per other layer, in IR order: nothing joined into runs yet."""
    return [box for unit in _units(ir) for box in _unit_boxes([unit])]


def boxes(ir: NestIR, *, collapse: bool) -> list[Box]:
    """The diagram's nodes in topological order.

    ``collapse`` gives the block view: a unit is one box, runs of identical units one
    "× n" box, and long blocks show their interlacing pattern once, then one folded box.
    """
    if not collapse:
        return [Box(layer.id, (layer,), (layer.id,)) for layer in ir.layers.values()]
    drawn = [box for run in _runs(_units(ir)) for box in _unit_boxes(run)]
    return _fold_blocks(ir, drawn)


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


def _base_inputs(ir: NestIR, layer: Layer, stripe: int) -> list[UnitId]:
    """Units of the base network feeding stripe ``stripe`` before pruning: the same stripe
    of each input for channel-wise ops, every stripe otherwise."""
    found: list[UnitId] = []
    for source_id in layer.inputs:
        source = ir.layers[source_id]
        aligned = layer.channelwise and len(source.stripes) == len(layer.stripes)
        found.extend([(source_id, stripe)] if aligned else list(source.units()))
    return found


def unit_edges(ir: NestIR, *, pruned: bool) -> list[UnitEdge]:
    """Every kept unit edge in IR order, and with ``pruned`` the base network's unit edges
    the stage rule removed (back-edges from later stripes or layers)."""
    found: list[UnitEdge] = []
    for layer in ir.layers.values():
        for unit in layer.units():
            kept = ir.kept_inputs(unit)
            found.extend(UnitEdge(source, unit, True) for source in kept)
            if pruned:
                removed = [s for s in _base_inputs(ir, layer, unit[1]) if s not in set(kept)]
                found.extend(UnitEdge(source, unit, False) for source in removed)
    return found


def _fits_by_unit(ir: NestIR) -> bool:
    """Every layer by unit stays readable: few layers and kept unit edges."""
    small = len(ir.layers) <= STRIPES_MAX_LAYERS
    return small and len(unit_edges(ir, pruned=False)) <= STRIPES_MAX_EDGES


def _layer_boxes(ir: NestIR, members: Iterable[str]) -> list[Box]:
    return [Box(member, (ir.layers[member],), (member,)) for member in members]


def _split_first_unit(ir: NestIR, box: Box) -> list[Box]:
    """A block-view box as its first unit's layers, one box each, then a box for the rest
    of its units (a "× n" run, or the one unit left)."""
    first = box.lead or box.layers
    ids = {layer.id for layer in first}
    rest = tuple(member for member in box.members if member not in ids)
    head = _layer_boxes(ir, [layer.id for layer in first])
    if not rest:
        return head
    start, end = ir.layers[rest[0]].position, ir.layers[rest[-1]].position
    unit = tuple(ir.layers[member] for member in rest if ir.layers[member].position == start)
    if box.repeat == 2:
        return [*head, Box(f"{box.block}.{start}", unit, rest)]
    return [*head, Box(f"{box.block}.{start}-{end}", unit, rest, box.repeat - 1, box.last)]


def width_boxes(ir: NestIR) -> list[Box]:
    """The width stripe view's boxes: every layer when the network is small enough to read
    by unit; else by layer up to the first unit of several layers (or OPEN_LAYERS layers):
    Figure 5's pattern, once; the rest as the block view draws it."""
    if _fits_by_unit(ir):
        return boxes(ir, collapse=False)
    drawn = boxes(ir, collapse=True)
    opened: list[Box] = []
    for index, box in enumerate(drawn):
        if box.block is None:
            opened.extend(_layer_boxes(ir, box.members))
            continue
        opened.extend(_split_first_unit(ir, box))
        if len(box.lead or box.layers) > 1 or len(opened) >= OPEN_LAYERS:
            return opened + drawn[index + 1 :]
    return opened


def wants_stripes(ir: NestIR) -> bool:
    """Small width-nested networks read best by unit (Figure 5): some layer has several
    stripes, every layer exists from stage 1 (with depth levels or exits the skip edges of
    every unit tangle), and the kept unit edges and layers stay within the readable budget."""
    widened = any(len(layer.stripes) > 1 for layer in ir.layers.values())
    widened &= all(layer.stage == 1 for layer in ir.layers.values() if layer.op != "head")
    return widened and _fits_by_unit(ir)
