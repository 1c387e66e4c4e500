"""Parameters and FLOPs per stage, computed from the IR alone (no module needed).

FLOPs are counted as multiply-accumulates of convolutions and linear layers (classifiers and
their hidden layers), as in the ResNet and anytime-network literature; BatchNorm,
activations, additions, pooling and dropout are not counted.
A unit's cost covers only its kept edges, so pruned back-edges cost nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from nestdsl.ir.model import Layer, NestIR, UnitId


@dataclass(frozen=True)
class StageCost:
    """The size of one stage."""

    stage: int
    label: str
    params: int
    """Parameters of D_k deployed alone: trunk units of stage <= k plus head k."""
    flops: int
    """FLOPs (MACs) of one input through D_k alone."""
    incremental_flops: int
    """FLOPs anytime execution adds for stage k: its new units plus head k."""
    anytime_params: int
    """Parameters the anytime network holds up to stage k (all heads 1..k)."""


def _fan_in(ir: NestIR, layer: Layer, unit: UnitId) -> int:
    """Input channels one output channel of the unit reads (a group's, for grouped convs)."""
    if layer.groups > 1:
        return ir.in_channels(layer) // layer.groups
    return ir.kept_width(unit)


def _head_widths(ir: NestIR, layer: Layer, unit: UnitId) -> list[int]:
    """Widths of the head's linear layers: flattened input, hidden layers, classes."""
    flat = ir.kept_width(unit) * layer.output_size**2
    return [flat, *layer.hidden, layer.channels]


def unit_params(ir: NestIR, unit: UnitId) -> int:
    layer = ir.layers[unit[0]]
    width = layer.stripes[unit[1]]
    if layer.op == "conv":
        extra = width * layer.bias + 2 * width * layer.bn
        return width * _fan_in(ir, layer, unit) * layer.kernel**2 + extra
    if layer.op in ("bn", "layernorm"):
        return 2 * width
    if layer.op == "head":
        widths = _head_widths(ir, layer, unit)
        return sum(a * b + b for a, b in itertools.pairwise(widths))
    return 0


def unit_flops(ir: NestIR, unit: UnitId) -> int:
    layer = ir.layers[unit[0]]
    if layer.op == "conv":
        pixels = layer.size[0] * layer.size[1]
        return pixels * layer.stripes[unit[1]] * _fan_in(ir, layer, unit) * layer.kernel**2
    if layer.op == "head":
        widths = _head_widths(ir, layer, unit)
        return sum(a * b for a, b in itertools.pairwise(widths))
    return 0


def _trunk_units(ir: NestIR) -> list[tuple[Layer, UnitId]]:
    return [(layer, u) for layer in ir.layers.values() if layer.op != "head" for u in layer.units()]


def stage_costs(ir: NestIR) -> list[StageCost]:
    """Per-stage parameters and FLOPs, in stage order."""
    trunk = [(ir.stage(u), unit_params(ir, u), unit_flops(ir, u)) for _, u in _trunk_units(ir)]
    heads = [((h, 0), unit_params(ir, (h, 0)), unit_flops(ir, (h, 0))) for h in ir.heads]
    costs = []
    for k, (_, head_params, head_flops) in enumerate(heads, start=1):
        params = sum(p for s, p, _ in trunk if s <= k)
        flops = sum(f for s, _, f in trunk if s <= k)
        new_flops = sum(f for s, _, f in trunk if s == k)
        costs.append(
            StageCost(
                stage=k,
                label=ir.stage_labels[k - 1],
                params=params + head_params,
                flops=flops + head_flops,
                incremental_flops=new_flops + head_flops,
                anytime_params=params + sum(p for _, p, _ in heads[:k]),
            )
        )
    return costs
