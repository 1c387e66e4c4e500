"""A stable, readable text form of the IR (``nestdsl compile SPEC --emit ir``).

One paragraph per layer in topological order: the op, its shape, and per unit its stage,
width and kept inputs. Units are written ``layer[stripe]`` with 1-based stripes. The text is
golden-tested, so it changes only when the IR does.
"""

from __future__ import annotations

from nestdsl.ir.model import Layer, NestIR, UnitId


def _unit(unit: UnitId) -> str:
    return f"{unit[0]}[{unit[1] + 1}]"


def _describe(layer: Layer) -> str:
    shape = f"{layer.channels}@{layer.size[0]}x{layer.size[1]}"
    if layer.op == "conv":
        relu = " relu" if layer.relu else ""
        return f"conv {layer.kernel}x{layer.kernel}/{layer.stride}{relu} -> {shape}"
    if layer.op == "head":
        return f"head avgpool+linear -> {layer.channels} classes"
    if layer.op == "maxpool":
        return f"maxpool {layer.kernel}x{layer.kernel}/{layer.stride} -> {shape}"
    if layer.op == "add":
        return f"add{' relu' if layer.relu else ''} -> {shape}"
    return f"input -> {shape}"


def dump_ir(ir: NestIR) -> str:
    """The IR as text: header, then one block per layer with its units and kept inputs."""
    lines = [
        f"ir {ir.name}",
        f"  input {'x'.join(map(str, ir.input_shape))}, {ir.num_classes} classes",
        f"  stages {ir.num_stages}: {' '.join(ir.stage_labels)}",
        f"  layers {len(ir.layers)}, units {ir.graph.number_of_nodes()}, "
        f"edges {ir.graph.number_of_edges()}",
        "",
    ]
    for layer in ir.layers.values():
        where = f"{layer.span.line}:{layer.span.column}"
        inputs = f" <- {layer.agg}({', '.join(layer.inputs)})" if layer.inputs else ""
        lines.append(f"layer {layer.id} (stage {layer.stage}, line {where}): {_describe(layer)}")
        if inputs:
            lines.append(f"  inputs{inputs}")
        for unit in layer.units():
            kept = ir.kept_inputs(unit)
            channels = layer.stripes[unit[1]]
            feeds = " ".join(_unit(u) for u in kept) if kept else "-"
            lines.append(f"  {_unit(unit)} stage {ir.stage(unit)} width {channels} <- {feeds}")
    return "\n".join(lines) + "\n"
