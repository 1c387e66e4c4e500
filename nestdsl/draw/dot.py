"""DOT source of a nested network, drawn like the paper's Figures 2-7.

Left to right, each layer is an HTML-like table: a header (name, op) over one cell per stripe,
stacked and filled with the colour of the unit's stage (:mod:`nestdsl.draw.palette`), so width
nesting shows as stacked shades (Figures 4-5), interlaced depth nesting as alternating hues
(Figure 3), and both at once as Figures 6-7. One cluster per resolution block, heads at the
right labelled with their stage, a legend mapping colours to stages. The text is deterministic
(ids from layer ids, sorted attributes, IR order) so it can be golden-tested without Graphviz.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape

from nestdsl.draw.nodes import Box, Edge, boxes, edges, unit_key
from nestdsl.draw.palette import StageColour, stage_colours
from nestdsl.ir.model import Layer, NestIR

FONT = "Helvetica"
STRIPE_HEIGHT = 10
"""Points per base-width stripe; wider stripes are proportionally taller (capped)."""
MAX_STRIPE_HEIGHT = 40

SKIP_STYLES: tuple[Mapping[str, str], ...] = (
    {"color": "#303030", "penwidth": "1.2", "weight": "8"},
    {"color": "#6e6e6e", "style": "dashed", "weight": "2"},
    {"color": "#9c9c9c", "style": "dashed", "weight": "1"},
    {"color": "#c0c0c0", "style": "dotted", "weight": "1"},
)
"""Edge style by input rank: direct input, then ever longer skips (shortcuts, 2, 4, 8 …)."""

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


def _attrs(attributes: Mapping[str, str]) -> str:
    """`[a="1", b="2"]` with sorted keys; HTML labels (`<…>`) are written unquoted."""
    parts = []
    for key in sorted(attributes):
        value = attributes[key]
        quoted = value if value.startswith("<") else '"' + value.replace('"', '\\"') + '"'
        parts.append(f"{key}={quoted}")
    return "[" + ", ".join(parts) + "]"


def _id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cell(text: str, attributes: Mapping[str, str]) -> str:
    attrs = "".join(f' {k}="{attributes[k]}"' for k in sorted(attributes))
    return f"<tr><td{attrs}>{text}</td></tr>"


def _table(rows: Iterable[str], style: str = "") -> str:
    extra = f' style="{style}"' if style else ""
    return (
        '<<table border="0" cellborder="1" cellspacing="0" cellpadding="3"'
        f"{extra}>{''.join(rows)}</table>>"
    )


def _stripes(layer: Layer, colours: Mapping[int, StageColour]) -> list[str]:
    """One cell per stripe, stripe 1 on top, height proportional to its width."""
    base = layer.stripes[0]
    rows = []
    for width, stage in zip(layer.stripes, layer.stripe_stages, strict=True):
        colour = colours[stage]
        height = min(MAX_STRIPE_HEIGHT, STRIPE_HEIGHT * max(1, width // max(base, 1)))
        text = f'<font color="{colour.font}" point-size="8">{width}</font>'
        rows.append(_cell(text, {"bgcolor": colour.fill, "height": str(height)}))
    return rows


def _header(title: str, subtitle: str) -> str:
    text = f"<b>{escape(title)}</b><br/>" + f'<font point-size="8">{escape(subtitle)}</font>'
    return _cell(text, {"bgcolor": "#ffffff"})


def _box_label(box: Box, ir: NestIR, colours: Mapping[int, StageColour]) -> str:
    layer = box.output
    if layer.op == "head":
        stage = ir.heads.index(layer.id) + 1
        colour = colours[stage]
        title = f"stage {stage} ({ir.stage_labels[stage - 1]})"
        text = (
            f'<font color="{colour.font}"><b>{escape(title)}</b><br/>'
            f'<font point-size="8">{escape(DESCRIBE["head"](layer))}</font></font>'
        )
        return _table([_cell(text, {"bgcolor": colour.fill})], style="rounded")
    if layer.op == "input":
        return _table([_header("input", DESCRIBE["input"](layer))], style="rounded")
    if box.repeat > 1 or len(box.layers) > 1:
        chain = (
            DESCRIBE[layer.op](layer)
            if len(box.layers) == 1
            else " → ".join(SHORT[part.op](part) for part in box.layers) + f" · {layer.channels}"
        )
        key = unit_key(box.layers[0])
        first = f"{key[0]}.{key[1]}" if key is not None else box.layers[0].id
        title = (
            f"{first} … {box.last} × {box.repeat}" if box.repeat > 1 else f"{first} {layer.unit}"
        )
        return _table([_header(title, chain), *_stripes(layer, colours)])
    return _table([_header(layer.id, DESCRIBE[layer.op](layer)), *_stripes(layer, colours)])


def _cluster_of(box: Box) -> str | None:
    """Blocks get a cluster each; stem layers share one; input, exits and heads none."""
    if box.block is not None:
        return box.block
    return "stem" if box.output.part in ("stem", "pool") else None


def _edge_line(edge: Edge) -> str:
    style = SKIP_STYLES[min(edge.skip, len(SKIP_STYLES) - 1)]
    return f"  {_id(edge.source)} -> {_id(edge.target)} {_attrs(style)};"


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


def _legend(ir: NestIR, colours: Mapping[int, StageColour]) -> list[str]:
    rows = []
    for stage, label in enumerate(ir.stage_labels, start=1):
        colour = colours[stage]
        rows.append(
            f'<tr><td bgcolor="{colour.fill}" width="14"></td>'
            f'<td align="left">stage {stage} ({escape(label)})</td></tr>'
        )
    for text in ("── direct input", "- - shortcut / skip 2", "··· longer skip"):
        rows.append(f'<tr><td></td><td align="left"><font point-size="8">{text}</font></td></tr>')
    table = (
        '<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">'
        + "".join(rows)
        + "</table>>"
    )
    return [
        '  subgraph "cluster_legend" {',
        "    graph " + _attrs({"label": "legend", "style": "rounded", "color": "#bbbbbb"}) + ";",
        f'    "legend" {_attrs({"label": table, "shape": "plain"})};',
        "  }",
    ]


def to_dot(ir: NestIR, *, collapse: bool = True, title: str | None = None) -> str:
    """The architecture as DOT source; ``collapse`` folds repeated units into "× n" nodes."""
    colours = stage_colours(ir)
    drawn = boxes(ir, collapse=collapse)
    kept = edges(ir, drawn)
    caption = (
        title
        if title is not None
        else (
            f"{ir.name}: {ir.num_stages} stage{'s' if ir.num_stages != 1 else ''} "
            f"({' '.join(ir.stage_labels)})"
        )
    )
    lines = [
        f"digraph {_id(ir.name)} {{",
        "  graph "
        + _attrs(
            {
                "rankdir": "LR",
                "label": caption,
                "labelloc": "t",
                "labeljust": "l",
                "fontname": FONT,
                "fontsize": "14",
                "nodesep": "0.2",
                "ranksep": "0.3",
                "newrank": "true",
            }
        )
        + ";",
        "  node " + _attrs({"shape": "plain", "fontname": FONT, "fontsize": "10"}) + ";",
        "  edge " + _attrs({"arrowsize": "0.6", "fontname": FONT}) + ";",
        *_legend(ir, colours),
    ]
    clusters: dict[str | None, list[Box]] = {}
    for box in drawn:
        clusters.setdefault(_cluster_of(box), []).append(box)
    for name, members in clusters.items():
        node_lines = [
            f"  {_id(box.id)} {_attrs({'label': _box_label(box, ir, colours)})};" for box in members
        ]
        if name is None:
            lines.extend(node_lines)
            continue
        style = {"label": name, "style": "rounded", "color": "#9e9e9e", "fontname": FONT}
        lines.append(f"  subgraph {_id('cluster_' + name)} {{")
        lines.append("    graph " + _attrs(style) + ";")
        lines.extend("  " + line for line in node_lines)
        lines.append("  }")
    lines.extend(_edge_line(edge) for edge in kept)
    lines.extend(_ordering_edges(drawn, {(e.source, e.target) for e in kept}))
    lines.extend(_rank_groups(ir, drawn))
    lines.append("}")
    return "\n".join(lines) + "\n"
