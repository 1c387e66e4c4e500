"""DOT source of a nested network, drawn like the paper's Figures 2-7.

Left to right, each box is an HTML-like table: a header (name, op or chain of ops) over one
cell per stripe, stacked and filled with the colour of the unit's stage
(:mod:`nestdsl.draw.palette`), so width nesting shows as stacked shades (Figures 4-5),
interlaced depth nesting as alternating hues (Figure 3), and both at once as Figures 6-7.
One cluster per resolution block, heads at the right labelled with their stage, and across
the top a legend with every stage's colour, parameters and FLOPs. Three views: the folded
block view (default), every layer (``collapse=False``), and the stripe view with an edge
per kept unit connection (Figure 5). ``stage`` highlights one subnetwork. The text is
deterministic (ids from structure fields, sorted attributes, IR order) so it can be
golden-tested without Graphviz.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html import escape

from nestdsl import diagnostics
from nestdsl.cost import stage_costs
from nestdsl.draw.nodes import (
    Box,
    Edge,
    UnitEdge,
    boxes,
    edges,
    unit_edges,
    unit_key,
    wants_stripes,
    width_boxes,
)
from nestdsl.draw.palette import StageColour, stage_colours
from nestdsl.draw.rows import LAYOUTS, RowLayout, grid_lines, shown_edges, stripe_variant
from nestdsl.draw.syntax import attrs as _attrs
from nestdsl.draw.syntax import quote as _id
from nestdsl.glossary import human
from nestdsl.ir.model import Layer, NestIR

FONT = "Helvetica"
STRIPE_HEIGHT = 10
"""Points per base-width stripe; wider stripes are proportionally taller (capped)."""
MAX_STRIPE_HEIGHT = 40
CHAIN_PER_LINE = 2
"""Ops per line in the chain of a unit box."""

SKIP_STYLES: tuple[Mapping[str, str], ...] = (
    {"color": "#303030", "penwidth": "1.2", "weight": "8"},
    {"color": "#6e6e6e", "style": "dashed", "weight": "2"},
    {"color": "#9c9c9c", "style": "dashed", "weight": "1"},
    {"color": "#c0c0c0", "style": "dotted", "weight": "1"},
)
"""Edge style by input rank: direct input, then ever longer skips (shortcuts, 2, 4, 8 …)."""

FADED = StageColour(fill="#eeeeee", font="#b4b4b4")
"""Units after the highlighted stage (`--stage K`)."""
FADED_EDGE = "#dddddd"
PRUNED_EDGE = "#c8c8c8"
"""Back-edges the stage rule prunes, drawn on request (`--show-pruned`)."""
EDGE_KEYS: Mapping[bool, tuple[str, ...]] = {
    False: ("── direct input", "- - shortcut / skip 2", "··· longer skip"),
    True: ("── kept unit edge (stage of source ≤ stage of target)", "- - pruned back-edge"),
}
"""The legend's edge line, by view (layer edges, or unit edges in the stripe view)."""
ROW_EDGE_KEYS = ("── direct input", "- - skip 2", "··· skip 4 and more (in the pattern)")
"""The row views' edge line: long skips are drawn between single units, not into folds."""

INVISIBLE: Mapping[str, str] = {"style": "invis", "weight": "4"}
"""Keeps interlaced layers of a block in pipeline order, as Figure 3 lays them out."""


def _kernel(layer: Layer) -> str:
    stride = f"/{layer.stride}" if layer.stride > 1 else ""
    depthwise = " dw" if layer.groups > 1 and layer.groups == layer.channels else ""
    grouped = f" g{layer.groups}" if layer.groups > 1 and not depthwise else ""
    return f"{layer.kernel}×{layer.kernel}{stride}{depthwise}{grouped}"


def _pool(layer: Layer) -> str:
    kind = "max" if layer.op == "maxpool" else "avg"
    size = f"→{layer.output_size}×{layer.output_size}" if layer.output_size else _kernel(layer)
    return f"{kind}-pool {size}"


DESCRIBE: Mapping[str, Callable[[Layer], str]] = {
    "input": lambda layer: f"{layer.channels}×{layer.size[0]}×{layer.size[1]}",
    "conv": lambda layer: f"conv {_kernel(layer)} · {layer.channels}",
    "add": lambda layer: f"⊕ add · {layer.channels}",
    "mul": lambda layer: f"⊗ gate · {layer.channels}",
    "flatten": lambda layer: f"flatten · {layer.channels}",
    "maxpool": _pool,
    "avgpool": _pool,
    "bn": lambda layer: (
        f"BN{'' if layer.act == 'identity' else ' ' + layer.act} · {layer.channels}"
    ),
    "act": lambda layer: f"{layer.act} · {layer.channels}",
    "layernorm": lambda layer: f"LayerNorm · {layer.channels}",
    "dropout": lambda layer: f"dropout {layer.dropout:g}",
    "head": lambda layer: f"avgpool + fc · {layer.channels}",
}
"""Op → the header's second line."""

SHORT: Mapping[str, Callable[[Layer], str]] = {
    "conv": _kernel,
    "add": lambda layer: "⊕",
    "mul": lambda layer: "⊗",
    "flatten": lambda layer: "flat",
    "maxpool": lambda layer: f"pool {_kernel(layer)}",
    "avgpool": lambda layer: f"pool {_kernel(layer)}",
    "bn": lambda layer: "BN",
    "layernorm": lambda layer: "LN",
    "act": lambda layer: layer.act,
    "dropout": lambda layer: "drop",
}
"""Op → the compact form used in the chain of a collapsed run (`3×3 → 3×3 → ⊕`)."""


def _cell(text: str, attributes: Mapping[str, str]) -> str:
    attrs = "".join(f' {k}="{attributes[k]}"' for k in sorted(attributes))
    return f"<tr><td{attrs}>{text}</td></tr>"


def _table(rows: Iterable[str], style: str = "") -> str:
    extra = f' style="{style}"' if style else ""
    return (
        '<<table border="0" cellborder="1" cellspacing="0" cellpadding="3"'
        f"{extra}>{''.join(rows)}</table>>"
    )


def _port(stripe: int, ports: bool) -> dict[str, str]:
    """The cell attribute naming stripe j's port (`u0`, `u1` …) in the stripe view."""
    return {"port": f"u{stripe}"} if ports else {}


def _stripes(layer: Layer, colours: Mapping[int, StageColour], ports: bool) -> list[str]:
    """One cell per stripe, stripe 1 on top, height proportional to its width."""
    base = layer.stripes[0]
    rows = []
    for j, (width, stage) in enumerate(zip(layer.stripes, layer.stripe_stages, strict=True)):
        colour = colours[stage]
        height = min(MAX_STRIPE_HEIGHT, STRIPE_HEIGHT * max(1, width // max(base, 1)))
        text = f'<font color="{colour.font}" point-size="8">{width}</font>'
        attributes = {"bgcolor": colour.fill, "height": str(height), **_port(j, ports)}
        rows.append(_cell(text, attributes))
    return rows


def _header(title: str, *subtitle: str, port: Mapping[str, str] | None = None) -> str:
    """Bold title over one small line per subtitle entry."""
    lines = "<br/>".join(escape(line) for line in subtitle)
    text = f"<b>{escape(title)}</b><br/>" + f'<font point-size="8">{lines}</font>'
    return _cell(text, {"bgcolor": "#ffffff", **(port or {})})


def _chain(layers: Iterable[Layer], channels: int) -> list[str]:
    """A unit's ops as `1×1 → 3×3 →` lines of CHAIN_PER_LINE ops (keeps boxes narrow)."""
    ops = [SHORT[layer.op](layer) for layer in layers]
    lines = [" → ".join(ops[i : i + CHAIN_PER_LINE]) for i in range(0, len(ops), CHAIN_PER_LINE)]
    return [line + " →" for line in lines[:-1]] + [f"{lines[-1]} · {channels}"]


def _folded_cells(box: Box, ir: NestIR, colours: Mapping[int, StageColour]) -> list[str]:
    """One cell per stage present in a folded stretch: how many of its units the stage
    introduces (depth levels, exits), or that it only widens them (width nesting)."""
    layers = [ir.layers[member] for member in box.members]
    present = sorted({stage for layer in layers for stage in layer.stripe_stages})
    outputs = {key[:2]: layer for layer in layers if (key := unit_key(layer)) is not None}
    rows = []
    for stage in present:
        count = sum(layer.stage == stage for layer in outputs.values())
        colour = colours[stage]
        added = f"+{count} unit{'s' if count > 1 else ''}" if count else "+stripes"
        text = f'<font color="{colour.font}" point-size="8">{added}</font>'
        rows.append(_cell(text, {"bgcolor": colour.fill, "height": str(STRIPE_HEIGHT)}))
    return rows


def _lead_note(box: Box) -> list[str]:
    """How a whole block's first unit differs from the repeated one drawn (stride, extra
    layers such as a projection); nothing when it does not."""
    if not box.lead or box.lead == box.layers:
        return []
    stride = max(layer.stride for layer in box.lead)
    notes = [f"/{stride}"] if stride > 1 else []
    extra = len(box.lead) - len(box.layers)
    notes += [f"+{extra} layer{'s' if extra > 1 else ''}"] if extra > 0 else []
    return [f"first unit: {' '.join(notes) or 'differs'}"]


def _box_label(
    box: Box, ir: NestIR, colours: Mapping[int, StageColour], ports: bool = False
) -> str:
    """The node's HTML table; ``ports`` names each stripe cell for unit-to-unit edges."""
    layer = box.output
    if layer.op == "head":
        stage = ir.heads.index(layer.id) + 1
        colour = colours[stage]
        title = f"stage {stage} ({ir.stage_labels[stage - 1]})"
        text = (
            f'<font color="{colour.font}"><b>{escape(title)}</b><br/>'
            f'<font point-size="8">{escape(DESCRIBE["head"](layer))}</font></font>'
        )
        return _table([_cell(text, {"bgcolor": colour.fill, **_port(0, ports)})], style="rounded")
    if layer.op == "input":
        header = _header("input", DESCRIBE["input"](layer), port=_port(0, ports))
        return _table([header], style="rounded")
    key = unit_key((box.lead or box.layers)[0])
    first = f"{key[0]}.{key[1]}" if key is not None else box.layers[0].id
    if box.folded:
        title = f"{first} … {box.last} × {box.repeat}"
        subtitle = f"{layer.unit} · {layer.channels}"
        return _table([_header(title, subtitle), *_folded_cells(box, ir, colours)])
    if box.repeat > 1 or len(box.layers) > 1:
        chain = (
            [DESCRIBE[layer.op](layer)]
            if len(box.layers) == 1
            else _chain(box.layers, layer.channels)
        )
        if box.repeat > 1:
            end = box.last.rsplit(".", 1)[-1] if box.short else box.last
            title, kind = f"{first}{'–' if box.short else ' … '}{end} × {box.repeat}", []
        else:
            title, kind = first, [layer.unit] if layer.unit else []
        lines = [*kind, *chain, *_lead_note(box)]
        return _table([_header(title, *lines), *_stripes(layer, colours, ports)])
    return _table([_header(layer.id, DESCRIBE[layer.op](layer)), *_stripes(layer, colours, ports)])


def _cluster_of(box: Box) -> str | None:
    """Blocks get a cluster each; stem layers share one; input, exits and heads none."""
    if box.block is not None:
        return box.block
    return "stem" if box.output.part in ("stem", "pool") else None


def _edge_line(edge: Edge, faded: bool) -> str:
    style = dict(SKIP_STYLES[min(edge.skip, len(SKIP_STYLES) - 1)])
    if faded:
        style["color"] = FADED_EDGE
    return f"  {_id(edge.source)} -> {_id(edge.target)} {_attrs(style)};"


def _unit_edge_line(ir: NestIR, edge: UnitEdge, highlight: int | None) -> str:
    """Stripe view: a kept unit edge dark, a pruned one greyed and dashed (no layout pull);
    with a highlight, edges of units after it fade."""
    (source, i), (target, j) = edge.source, edge.target
    if not edge.kept:
        style = {"color": PRUNED_EDGE, "style": "dashed", "constraint": "false"}
    elif highlight is not None and ir.stage(edge.target) > highlight:
        style = {"color": FADED_EDGE}
    else:
        style = {"color": "#404040"}
    return f'  {_id(source)}:"u{i}":e -> {_id(target)}:"u{j}":w {_attrs(style)};'


def _ordering_edges(drawn: list[Box], visible: set[tuple[str, str]]) -> list[str]:
    """Invisible edges between consecutive single-layer units of a block (interlacing)."""
    lines = []
    previous: Box | None = None
    for box in drawn:
        key = unit_key(box.output)
        if key is None or key[2] or box.repeat > 1:
            continue
        linked = previous is not None and (previous.id, box.id) in visible
        if previous is not None and previous.block == box.block and not linked:
            lines.append(f"  {_id(previous.id)} -> {_id(box.id)} {_attrs(INVISIBLE)};")
        previous = box
    return lines


def _rank_groups(ir: NestIR, drawn: list[Box]) -> list[str]:
    """Per-level transitions side by side; heads at the right unless they branch (cascade)."""
    lines = []
    transitions: dict[str | None, list[str]] = {}
    for box in drawn:
        if box.block is not None and box.output.part == "transition":
            transitions.setdefault(box.block, []).append(box.id)
    for ids in transitions.values():
        if len(ids) > 1:
            lines.append("  {rank=same; " + " ".join(_id(i) for i in ids) + ";}")
    last_block = next((b.block for b in reversed(drawn) if b.block is not None), None)
    head_inputs = {ir.layers[s].block for h in ir.heads for s in ir.layers[h].inputs}
    if head_inputs == {last_block}:
        lines.append("  {rank=sink; " + " ".join(_id(h) for h in ir.heads) + ";}")
        lines.extend(
            f"  {_id(a)} -> {_id(b)} {_attrs(INVISIBLE)};"
            for a, b in zip(ir.heads, ir.heads[1:], strict=False)
        )
    return lines


def _legend(
    ir: NestIR,
    caption: str,
    colours: Mapping[int, StageColour],
    highlight: int | None,
    styles: tuple[str, ...],
) -> str:
    """The graph's label: the caption over a legend with a column per stage (its colour,
    parameters and FLOPs of D_k alone, from :mod:`nestdsl.cost`; the highlighted stage in
    bold) and the edge styles. Laid out across the top, it never widens the diagram's
    pipeline the way a legend node in the first rank would."""
    costs = stage_costs(ir)
    small = '<font point-size="8">{}</font>'

    def cell(text: str, stage: int, extra: str = "") -> str:
        shown = f"<b>{text}</b>" if stage == highlight else text
        return f'<td align="right"{extra}>{small.format(shown)}</td>'

    names = "".join(
        f'<td bgcolor="{colours[c.stage].fill}">'
        f'<font color="{colours[c.stage].font}" point-size="9">'
        + (
            f"<b>{escape(f'stage {c.stage} ({c.label})')}</b>"
            if c.stage == highlight
            else escape(f"stage {c.stage} ({c.label})")
        )
        + "</font></td>"
        for c in costs
    )
    params = "".join(cell(human(c.params), c.stage) for c in costs)
    flops = "".join(cell(human(c.flops), c.stage) for c in costs)
    span = len(costs) + 1
    rows = [
        f'<tr><td align="left" colspan="{span}">{escape(caption)}</td></tr>',
        f"<tr><td></td>{names}</tr>",
        f'<tr><td align="left">{small.format("params")}</td>{params}</tr>',
        f'<tr><td align="left">{small.format("FLOPs (MACs)")}</td>{flops}</tr>',
        f'<tr><td align="left" colspan="{span}">{small.format("    ".join(styles))}</td></tr>',
    ]
    return (
        '<<table border="0" cellborder="0" cellspacing="1" cellpadding="2">'
        + "".join(rows)
        + "</table>>"
    )


def _caption(ir: NestIR, title: str | None, highlight: int | None) -> str:
    if title is not None:
        return title
    stages = f"{ir.num_stages} stage{'s' if ir.num_stages != 1 else ''}"
    caption = f"{ir.name}: {stages} ({' '.join(ir.stage_labels)})"
    if highlight is None:
        return caption
    return f"{caption}, D{highlight} ({ir.stage_labels[highlight - 1]}) highlighted"


def _check_stage(ir: NestIR, highlight: int | None) -> None:
    if highlight is not None and not 1 <= highlight <= ir.num_stages:
        diagnostics.fail(
            code="E906",
            message=f"cannot highlight stage {highlight}: `{ir.name}` has stages "
            f"1 to {ir.num_stages}",
            help=f"pick a stage between 1 and {ir.num_stages} ({' '.join(ir.stage_labels)})",
        )


def _faded(colours: Mapping[int, StageColour], highlight: int | None) -> dict[int, StageColour]:
    """The palette with the stages after ``highlight`` greyed out."""
    return {
        stage: colour if highlight is None or stage <= highlight else FADED
        for stage, colour in colours.items()
    }


@dataclass(frozen=True)
class View:
    """What one call draws: the boxes, and how they are arranged and connected."""

    boxes: list[Box]
    by_unit: bool = False
    """Width stripe view: unit-to-unit edges between stripe cells (Figure 5)."""
    layout: RowLayout | None = None
    """Row views (depth, width-depth, cascade): a grid instead of block clusters."""
    ranksep: str = "0.15"
    """Inches between columns: unit edges fan out between stripe cells and need room."""


def _choose_view(ir: NestIR, *, collapse: bool, stripes: bool | None) -> View:
    """The block view (folded or, without ``collapse``, expanded), or a stripe view: with
    ``collapse`` the one that explains the schedule (:func:`~nestdsl.draw.rows.
    stripe_variant`), without it every layer by unit with every unit edge. ``stripes=None``
    picks the stripe view for small width-nested networks in the block view."""
    wanted = wants_stripes(ir) and collapse if stripes is None else stripes
    if not wanted:
        return View(boxes(ir, collapse=collapse))
    if not collapse:
        return View(boxes(ir, collapse=False), by_unit=True, ranksep="0.6")
    variant = stripe_variant(ir)
    if variant in LAYOUTS:
        layout = LAYOUTS[variant](ir)
        return View(layout.boxes, layout=layout, ranksep="0.25")
    if variant == "width":
        drawn = width_boxes(ir)
        every = len(drawn) == len(ir.layers)
        return View(drawn, by_unit=True, ranksep="0.6" if every else "0.3")
    return View(boxes(ir, collapse=True))  # no nesting: nothing to show by unit


def _graph_line(ir: NestIR, view: View, legend: str) -> str:
    spacing = {"nodesep": "0.2" if view.layout is None else "0.25", "ranksep": view.ranksep}
    graph = {
        "rankdir": "LR",
        "label": legend,
        "labelloc": "t",
        "labeljust": "l",
        "fontname": FONT,
        "fontsize": "14",
        "newrank": "true",
        **spacing,
    }
    return "  graph " + _attrs(graph) + ";"


def _node_lines(ir: NestIR, view: View, colours: Mapping[int, StageColour]) -> list[str]:
    """Boxes grouped into block clusters; a row view's boxes without clusters (a cluster
    would pull its boxes out of their rows), placed by the grid."""
    lines: list[str] = []
    clusters: dict[str | None, list[Box]] = {}
    for box in view.boxes:
        key = None if view.layout is not None else _cluster_of(box)
        clusters.setdefault(key, []).append(box)
    for name, members in clusters.items():
        node_lines = [
            f"  {_id(box.id)} {_attrs({'label': _box_label(box, ir, colours, view.by_unit)})};"
            for box in members
        ]
        if name is None:
            lines.extend(node_lines)
            continue
        style = {
            "label": name,
            "style": "rounded",
            "color": "#9e9e9e",
            "fontname": FONT,
            "margin": "4",
        }
        lines.append(f"  subgraph {_id('cluster_' + name)} {{")
        lines.append("    graph " + _attrs(style) + ";")
        lines.extend("  " + line for line in node_lines)
        lines.append("  }")
    if view.layout is not None:
        lines.extend(grid_lines(view.layout))
    return lines


def to_dot(
    ir: NestIR,
    *,
    collapse: bool = True,
    title: str | None = None,
    stage: int | None = None,
    stripes: bool | None = None,
    show_pruned: bool = False,
) -> str:
    """The architecture as DOT source.

    ``collapse`` gives the block view (units, runs and long blocks folded), else every
    layer. ``stripes`` draws the stripe view that explains the schedule: for width nesting
    every layer with its units as stacked cells and the kept unit-to-unit edges (Figure 5),
    plus the pruned back-edges greyed with ``show_pruned``; for depth levels, width-depth
    growth and cascades the rows of :mod:`nestdsl.draw.rows` (Figures 3, 6-7 and 2).
    ``None`` picks it for small width-nested networks in the block view
    (:func:`~nestdsl.draw.nodes.wants_stripes`). ``stage`` highlights the subnetwork
    D_stage and greys out every later unit, edge and head.
    """
    _check_stage(ir, stage)
    view = _choose_view(ir, collapse=collapse, stripes=stripes)
    palette = stage_colours(ir)
    colours = _faded(palette, stage)
    drawn = view.boxes
    kept = edges(ir, drawn)
    if view.layout is not None:
        kept = shown_edges(view.layout, kept)
    first_stage = {box.id: min(ir.layers[m].stage for m in box.members) for box in drawn}
    single = {box.id for box in drawn if box.members == (box.id,)} if view.by_unit else set()
    pairs = [
        edge
        for edge in unit_edges(ir, pruned=show_pruned)
        if edge.source[0] in single and edge.target[0] in single
    ]
    kept = [edge for edge in kept if not {edge.source, edge.target} <= single]
    layer_keys = EDGE_KEYS[False] if view.layout is None else ROW_EDGE_KEYS
    styles = (EDGE_KEYS[True] if pairs else ()) + (layer_keys if kept else ())
    legend = _legend(ir, _caption(ir, title, stage), palette, stage, styles)
    lines = [
        f"digraph {_id(ir.name)} {{",
        _graph_line(ir, view, legend),
        "  node " + _attrs({"shape": "plain", "fontname": FONT, "fontsize": "10"}) + ";",
        "  edge " + _attrs({"arrowsize": "0.6", "fontname": FONT}) + ";",
        *_node_lines(ir, view, colours),
    ]
    lines.extend(_unit_edge_line(ir, edge, stage) for edge in pairs)
    lines.extend(
        _edge_line(
            edge,
            stage is not None and max(first_stage[edge.source], first_stage[edge.target]) > stage,
        )
        for edge in kept
    )
    if view.layout is None:
        lines.extend(_ordering_edges(drawn, {(e.source, e.target) for e in kept}))
        lines.extend(_rank_groups(ir, drawn))
    lines.append("}")
    return "\n".join(lines) + "\n"
