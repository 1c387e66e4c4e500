"""The graph IR: layers split into units (layer, stripe), each unit carrying its stage.

A *unit* is one stripe of channels of one layer. Its stage is the first stage at which both
its layer (depth level, cascade exit, head) and its stripe exist. Edges between units are
those of the base network kept by one rule: ``stage(src) <= stage(dst)``. That single rule
prunes back-edges for width nesting (a later stripe never feeds an earlier one), for depth
nesting (a later layer never feeds an earlier one) and for every combination.

The unit graph lives in a :class:`networkx.DiGraph` (nodes are ``(layer_id, stripe)``
tuples); the layers, in topological order, carry what the compiler needs to run each layer
as one dense operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import networkx as nx

from nestdsl.diagnostics import Span

Op = Literal[
    "input",
    "conv",
    "bn",
    "layernorm",
    "act",
    "add",
    "mul",
    "maxpool",
    "avgpool",
    "dropout",
    "flatten",
    "head",
]
Agg = Literal["sum", "product", "concat"]
"""How a layer's inputs are combined: summed, multiplied (an SE gate: the gate's 1×1 map
broadcasts over the features) or concatenated. Sum and product align stripe j of each input."""
Activation = Literal[
    "identity", "relu", "relu6", "silu", "gelu", "hardswish", "sigmoid", "hardsigmoid"
]
UnitId = tuple[str, int]

CHANNELWISE_OPS: frozenset[str] = frozenset(
    {"bn", "act", "add", "mul", "maxpool", "avgpool", "dropout", "flatten"}
)
"""Ops whose stripe j reads only stripe j of each input (no mixing across channels).
A grouped convolution is channel-wise too, at the granularity of stripes (see
:attr:`Layer.channelwise`)."""


@dataclass(frozen=True)
class Layer:
    """One layer of the base network, run as one dense op in joint execution."""

    id: str
    op: Op
    stage: int
    """The first stage at which the layer exists (its depth level, exit or head stage)."""
    inputs: tuple[str, ...]
    agg: Agg
    """How several inputs are combined before the op (see :data:`Agg`)."""
    stripes: tuple[int, ...]
    """Channels per stripe; one entry for unsplit layers (input, heads)."""
    stripe_stages: tuple[int, ...]
    """The stage of each unit (layer, stripe): max(layer stage, stripe stage)."""
    size: tuple[int, int]
    """Output spatial size (H, W); heads have (1, 1)."""
    span: Span
    label: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    """Convolution groups; > 1 only with stripes that hold whole groups (checked)."""
    bias: bool = False
    bn: bool = False
    """A convolution followed by BatchNorm (fused into one layer)."""
    act: Activation = "identity"
    """The activation applied last (after the BatchNorm, the sum or the pooling)."""
    output_size: int = 0
    """Adaptive pooling's output size (square); 0 for fixed-kernel pooling. Heads: the
    size their input is pooled to before flattening (1 = global average pooling). `flatten`
    layers: 1 (their output map is 1×1)."""
    dropout: float = 0.0
    """Dropout probability (`dropout` layers; heads: before each linear layer)."""
    hidden: tuple[int, ...] = ()
    """Heads only: widths of hidden linear layers (each followed by ReLU)."""
    block: str | None = None
    level: int = 1
    """The depth level that introduces the layer (1 without depth nesting)."""
    unit: str = ""
    """The kind of repeated unit the layer belongs to (`basic`, `sparse_resnet` ...); empty
    for layers outside repeated units."""
    position: int = 0
    """The 1-based position of the layer's repeated unit in its block; 0 outside units."""
    part: str = ""
    """The layer's role. Inside a unit: its name there (`conv1`, `proj`, `add`), empty when
    the layer is the whole unit. Outside: `input`, `stem`, `pool`, `transition`, `exit`,
    `head`. Consumers (drawing) read structure from these fields, never from ids."""

    @property
    def channels(self) -> int:
        return sum(self.stripes)

    @property
    def relu(self) -> bool:
        return self.act == "relu"

    @property
    def channelwise(self) -> bool:
        """Stripe j reads only stripe j of each input (channel-wise ops, grouped convs)."""
        return self.op in CHANNELWISE_OPS or self.groups > 1

    def offsets(self) -> tuple[int, ...]:
        """Channel offset of each stripe inside the layer's output."""
        starts, total = [], 0
        for width in self.stripes:
            starts.append(total)
            total += width
        return tuple(starts)

    def units(self) -> Iterator[UnitId]:
        return ((self.id, j) for j in range(len(self.stripes)))


@dataclass
class NestIR:
    """A nested network: layers in topological order plus the pruned unit graph."""

    name: str
    layers: dict[str, Layer]
    heads: tuple[str, ...]
    """The output layer of each stage, in stage order."""
    stage_labels: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    @property
    def num_stages(self) -> int:
        return len(self.heads)

    def stage(self, unit: UnitId) -> int:
        layer_id, stripe = unit
        return self.layers[layer_id].stripe_stages[stripe]

    def kept_inputs(self, unit: UnitId) -> list[UnitId]:
        """The units feeding ``unit`` after pruning, in input order then stripe order."""
        layer = self.layers[unit[0]]
        order = {layer_id: i for i, layer_id in enumerate(layer.inputs)}
        return sorted(self.graph.predecessors(unit), key=lambda u: (order[u[0]], u[1]))

    def in_channels(self, layer: Layer) -> int:
        """Channels of the layer's aggregated input."""
        widths = [self.layers[s].channels for s in layer.inputs]
        return sum(widths) if layer.agg == "concat" else widths[0]

    def kept_width(self, unit: UnitId) -> int:
        """How many input channels the unit's kept edges cover: arithmetic on stripe widths
        (the same number as ``len(kept_channels(unit))``, without listing the channels)."""
        layer = self.layers[unit[0]]
        kept = self.kept_inputs(unit)
        if layer.agg != "concat" and kept:  # the same stripes from every aligned input
            kept = [u for u in kept if u[0] == kept[0][0]]
        return sum(self.layers[source].stripes[i] for source, i in kept)

    def kept_channels(self, unit: UnitId) -> list[int]:
        """Input channels (of the aggregated input) that the unit's kept edges cover.

        For summed inputs the same stripes must be kept from every input, or a single dense
        op could not compute the unit; the stage rule guarantees it because an input layer
        never has a later stage than the layer it feeds.
        """
        layer = self.layers[unit[0]]
        offsets, total = {}, 0
        for source_id in layer.inputs:
            offsets[source_id] = total if layer.agg == "concat" else 0
            total += self.layers[source_id].channels
        kept_by_source: dict[str, set[int]] = {s: set() for s in layer.inputs}
        channels: set[int] = set()
        for source_id, i in self.kept_inputs(unit):
            source = self.layers[source_id]
            start = offsets[source_id] + source.offsets()[i]
            channels.update(range(start, start + source.stripes[i]))
            kept_by_source[source_id].add(i)
        aligned = layer.agg != "concat"
        if aligned and len({frozenset(v) for v in kept_by_source.values()}) > 1:
            raise AssertionError(f"summed inputs of {unit} are pruned inconsistently")
        return sorted(channels)

    def restrict(self, stage: int) -> NestIR:
        """The standalone network D_stage: units of stage <= ``stage`` and its own head only.

        Stripes are introduced in stage order, so the kept stripes of each layer are a
        prefix; unit stages and edges are unchanged.
        """
        head = self.heads[stage - 1]
        layers: dict[str, Layer] = {}
        for layer in self.layers.values():
            if layer.op == "head" and layer.id != head:
                continue
            kept = sum(s <= stage for s in layer.stripe_stages)
            if kept == 0:
                continue
            inputs = tuple(i for i in layer.inputs if i in layers)
            stripes = layer.stripes[:kept]
            layers[layer.id] = replace(
                layer,
                inputs=inputs,
                stripes=stripes,
                stripe_stages=layer.stripe_stages[:kept],
                groups=max(1, layer.groups * sum(stripes) // layer.channels),  # whole groups
            )
        graph = self.graph.subgraph(
            u for u in self.graph if u[0] in layers and self.stage(u) <= stage
        ).copy()
        return NestIR(
            name=f"{self.name}[D{stage}]",
            layers=layers,
            heads=(head,),
            stage_labels=(self.stage_labels[stage - 1],),
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            graph=graph,
        )
