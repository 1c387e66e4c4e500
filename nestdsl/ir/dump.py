"""A stable, readable text form of the IR (``nestdsl compile SPEC --emit ir``).

One paragraph per layer in topological order: the op, its shape, and per unit its stage,
width and kept inputs. Units are written ``layer[stripe]`` with 1-based stripes. The text is
golden-tested, so it changes only when the IR does.
"""

from __future__ import annotations

from collections.abc import Callable

from nestdsl.ir.model import Layer, NestIR, UnitId


def _unit(unit: UnitId) -> str:
    return f"{unit[0]}[{unit[1] + 1}]"


def _act(layer: Layer) -> str:
    return "" if layer.act == "identity" else f" {layer.act}"


def _window(layer: Layer) -> str:
    """`3x3/2`, with padding, dilation and groups where they are not the defaults."""
    text = f"{layer.kernel}x{layer.kernel}/{layer.stride}"
    if layer.op == "conv" and layer.padding != layer.kernel // 2 * layer.dilation:
        text += f" pad {layer.padding}"
    if layer.op != "conv" and layer.padding:
        text += f" pad {layer.padding}"
    if layer.dilation != 1:
        text += f" dilation {layer.dilation}"
    if layer.groups != 1:
        text += f" groups {layer.groups}"
    return text


def _conv(layer: Layer) -> str:
    extras = (" bias" if layer.bias else "") + ("" if layer.bn else " no-bn")
    return f"conv {_window(layer)}{extras}"


def _pool(layer: Layer) -> str:
    size = f" to {layer.output_size}x{layer.output_size}" if layer.output_size else ""
    return f"{layer.op}{size}" if size else f"{layer.op} {_window(layer)}"


def _head(layer: Layer) -> str:
    pool = "avgpool" if layer.output_size == 1 else f"avgpool {layer.output_size}x"
    hidden = "".join(f"+linear {h}" for h in layer.hidden)
    drop = f" dropout {layer.dropout}" if layer.dropout else ""
    return f"head {pool}{hidden}+linear{drop}"


_DESCRIBE: dict[str, Callable[[Layer], str]] = {
    "input": lambda layer: "input",
    "conv": _conv,
    "bn": lambda layer: "bn",
    "layernorm": lambda layer: "layernorm",
    "act": lambda layer: "act",
    "add": lambda layer: "add",
    "mul": lambda layer: "mul",
    "flatten": lambda layer: "flatten",
    "maxpool": _pool,
    "avgpool": _pool,
    "dropout": lambda layer: f"dropout {layer.dropout}",
}


def _describe(layer: Layer) -> str:
    if layer.op == "head":
        return f"{_head(layer)} -> {layer.channels} classes"
    shape = f"{layer.channels}@{layer.size[0]}x{layer.size[1]}"
    return f"{_DESCRIBE[layer.op](layer)}{_act(layer)} -> {shape}"


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
