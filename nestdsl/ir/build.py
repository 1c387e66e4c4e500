"""Lower a checked AST into the graph IR: layers, stages, and the pruned unit graph.

Block kinds are lowered by a dispatch table (:data:`BLOCK_BUILDERS`). Every layer is given
its stage when it is created: the stage of its depth level for interlaced depth nesting, of
its cascade exit for the EANN baseline, 1 otherwise; width nesting then splits each layer
into stripes whose units get ``max(layer stage, stripe stage)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx

from nestdsl.ast import Block, Spec
from nestdsl.diagnostics import Span
from nestdsl.ir.model import Activation, Agg, Layer, NestIR, Op
from nestdsl.schedule import StagePlan, expand


@dataclass(frozen=True)
class Attrs:
    """What an op computes: the operation attributes of :class:`Layer` (see there)."""

    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    bn: bool = False
    act: Activation = "identity"
    output_size: int = 0
    dropout: float = 0.0
    hidden: tuple[int, ...] = ()

    def output(self, size: tuple[int, int]) -> tuple[int, int]:
        """The output resolution for an input of ``size`` (convolution arithmetic)."""
        if self.output_size:
            return (self.output_size, self.output_size)
        reach = self.dilation * (self.kernel - 1) + 1
        height, width = ((n + 2 * self.padding - reach) // self.stride + 1 for n in size)
        return (height, width)


@dataclass(frozen=True)
class Place:
    """Where a layer sits: the structural fields of :class:`Layer` (see there)."""

    block: str | None = None
    level: int = 1
    unit: str = ""
    position: int = 0
    part: str = ""


@dataclass(frozen=True)
class Feature:
    """A tensor as a consumer sees it: one or more layers, combined by ``agg``."""

    sources: tuple[str, ...]
    agg: Agg
    channels: int
    size: tuple[int, int]


def merge(features: Sequence[Feature], agg: Agg) -> Feature:
    """Aggregate several single-layer features (a SparseNet layer's input)."""
    channels = features[0].channels if agg == "sum" else sum(f.channels for f in features)
    sources = tuple(s for f in features for s in f.sources)
    return Feature(sources, agg, channels, features[0].size)


class Builder:
    """Accumulates layers in topological order while the blocks are lowered."""

    def __init__(self, spec: Spec, plan: StagePlan):
        self.spec = spec
        self.plan = plan
        self.layers: dict[str, Layer] = {}
        self.position = 0
        """Trunk position of the repeated unit being lowered (1-based; 0 = stem)."""
        self.trunk: list[Feature] = []
        """The feature after each trunk position, for cascade exits (single-level nets only)."""
        total = sum(block.count for block in spec.blocks)
        self.exit_positions = tuple(
            total // 2 ** (plan.depth_levels - e) for e in range(1, plan.depth_levels + 1)
        )

    def stage_of(self, level: int, position: int | None = None) -> int:
        """The stage of a layer of depth ``level`` at trunk ``position``."""
        if not self.plan.cascade:
            return self.plan.level_stages[level - 1]
        position = self.position if position is None else position
        exit_index = next(
            (i for i, p in enumerate(self.exit_positions) if position <= p),
            len(self.exit_positions) - 1,
        )
        return self.plan.level_stages[exit_index]

    def add(
        self,
        layer_id: str,
        op: Op,
        feature: Feature,
        channels: int,
        *,
        stage: int,
        span: Span,
        label: str,
        attrs: Attrs = Attrs(),
        place: Place = Place(),
        split: bool = True,
    ) -> Feature:
        """Create a layer reading ``feature``; return its output as a feature."""
        if split:
            stripes = self.plan.stripe_channels(channels)
            stripe_stages = tuple(max(stage, s) for s in self.plan.stripe_stages)
        else:
            stripes, stripe_stages = (channels,), (stage,)
        self.layers[layer_id] = Layer(
            id=layer_id,
            op=op,
            stage=stage,
            inputs=feature.sources,
            agg=feature.agg,
            stripes=stripes,
            stripe_stages=stripe_stages,
            size=(1, 1) if op == "head" else attrs.output(feature.size),
            span=span,
            label=label,
            kernel=attrs.kernel,
            stride=attrs.stride,
            padding=attrs.padding,
            dilation=attrs.dilation,
            groups=attrs.groups,
            bias=attrs.bias,
            bn=attrs.bn,
            act=attrs.act,
            output_size=attrs.output_size,
            dropout=attrs.dropout,
            hidden=attrs.hidden,
            block=place.block,
            level=place.level,
            unit=place.unit,
            position=place.position,
            part=place.part,
        )
        return Feature((layer_id,), "sum", channels, self.layers[layer_id].size)

    def conv(
        self,
        layer_id: str,
        feature: Feature,
        channels: int,
        *,
        kernel: int,
        stride: int = 1,
        act: Activation = "relu",
        block: Block,
        label: str,
        level: int = 1,
        stage: int | None = None,
        position: int = 0,
        part: str = "",
    ) -> Feature:
        """A built-in kind's convolution: conv, BatchNorm, optional ReLU, "same" padding."""
        return self.add(
            layer_id,
            "conv",
            feature,
            channels,
            stage=self.stage_of(level) if stage is None else stage,
            span=block.span,
            label=label,
            attrs=Attrs(kernel=kernel, stride=stride, padding=kernel // 2, bn=True, act=act),
            place=Place(block.name, level, block.kind if position else "", position, part),
        )


def build_ir(spec: Spec) -> NestIR:
    """Lower a checked spec into the IR (the spec must have passed ``nestdsl.checks``)."""
    plan = expand(spec.schedule)
    builder = Builder(spec, plan)
    shape = spec.input
    image = builder.add(
        "input",
        "input",
        Feature((), "sum", shape.channels, (shape.height, shape.width)),
        shape.channels,
        stage=1,
        span=shape.span,
        label=f"input {shape.channels}×{shape.height}×{shape.width}",
        place=Place(part="input"),
        split=False,
    )
    stem = spec.stem
    feature = builder.add(
        "stem",
        "conv",
        image,
        stem.channels,
        stage=1,
        span=stem.span,
        label=f"stem conv {stem.kernel}×{stem.kernel}/{stem.stride}",
        attrs=Attrs(
            kernel=stem.kernel, stride=stem.stride, padding=stem.kernel // 2, bn=True, act="relu"
        ),
        place=Place(part="stem"),
    )
    if stem.pool == "max":
        feature = builder.add(
            "stem.pool",
            "maxpool",
            feature,
            stem.channels,
            stage=1,
            span=stem.span_of("pool"),
            label="stem max-pool 3×3/2",
            attrs=Attrs(kernel=3, stride=2, padding=1),
            place=Place(part="pool"),
        )
    levels = 1 if plan.cascade else plan.depth_levels
    features = [feature] * levels
    for block in spec.blocks:
        features = BLOCK_BUILDERS[block.kind](builder, block, features)
    heads = _cascade_heads(builder) if plan.cascade else _nested_heads(builder, features)
    return NestIR(
        name=spec.name,
        layers=builder.layers,
        heads=heads,
        stage_labels=plan.labels,
        input_shape=(shape.channels, shape.height, shape.width),
        num_classes=spec.head.classes,
        graph=_unit_graph(builder.layers),
    )


def _head(builder: Builder, stage: int, feature: Feature) -> str:
    head = builder.spec.head
    layer_id = f"head{stage}"
    builder.add(
        layer_id,
        "head",
        feature,
        head.classes,
        stage=stage,
        span=head.span,
        label=f"head {builder.plan.labels[stage - 1]} (stage {stage})",
        attrs=Attrs(output_size=1),
        place=Place(part="head"),
        split=False,
    )
    return layer_id


def _nested_heads(builder: Builder, features: list[Feature]) -> tuple[str, ...]:
    """Stage k's head reads the final output of the depth level present at stage k."""
    plan = builder.plan
    return tuple(
        _head(builder, k, features[plan.level_of_stage(k) - 1])
        for k in range(1, plan.num_stages + 1)
    )


def _cascade_heads(builder: Builder) -> tuple[str, ...]:
    """EANN: exit k reads the trunk at its position through a branch of its own.

    The last exit is the base network's own classifier and needs no branch.
    """
    heads = []
    last = len(builder.exit_positions)
    for stage, position in enumerate(builder.exit_positions, start=1):
        feature = builder.trunk[position - 1]
        if stage < last:
            feature = builder.add(
                f"exit{stage}",
                "conv",
                feature,
                feature.channels,
                stage=stage,
                span=builder.spec.schedule.span,
                label=f"exit {stage} branch conv 3×3",
                attrs=Attrs(kernel=3, padding=1, bn=True, act="relu"),
                place=Place(part="exit"),
            )
        heads.append(_head(builder, stage, feature))
    return tuple(heads)


# --- block kinds ---------------------------------------------------------------------------


def _single_level(features: list[Feature]) -> Feature:
    assert len(features) == 1, "checks reject depth nesting of non-sparse blocks"
    return features[0]


def _plain_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    feature = _single_level(features)
    for r in range(1, block.count + 1):
        builder.position += 1
        feature = builder.conv(
            f"{block.name}.{r}",
            feature,
            block.channels,
            kernel=3,
            stride=block.stride if r == 1 else 1,
            block=block,
            label=f"{block.name} layer {r} conv 3×3",
            position=r,
        )
        builder.trunk.append(feature)
    return [feature]


def _shortcut(
    builder: Builder, block: Block, position: int, feature: Feature, channels: int, stride: int
) -> Feature:
    """Identity when shapes allow, else a 1×1 projection (conv + BN)."""
    identity = stride == 1 and feature.channels == channels
    if identity and (len(feature.sources) == 1 or feature.agg == "sum"):
        return feature
    unit = f"{block.name}.{position}"
    return builder.conv(
        f"{unit}.proj",
        feature,
        channels,
        kernel=1,
        stride=stride,
        act="identity",
        block=block,
        label=f"{unit} projection 1×1/{stride}",
        position=position,
        part="proj",
    )


ConvStep = tuple[str, int, int, int, Activation]
"""A residual unit's convolution: name, kernel, channels, stride, activation."""


def _residual_unit(
    builder: Builder,
    block: Block,
    position: int,
    feature: Feature,
    convs: Sequence[ConvStep],
    stride: int,
) -> Feature:
    """A residual unit: a chain of convs (name, kernel, channels, stride, activation) + shortcut."""
    unit = f"{block.name}.{position}"
    shortcut = _shortcut(builder, block, position, feature, convs[-1][2], stride)
    main = feature
    for name, kernel, channels, conv_stride, act in convs:
        main = builder.conv(
            f"{unit}.{name}",
            main,
            channels,
            kernel=kernel,
            stride=conv_stride,
            act=act,
            block=block,
            label=f"{unit} {name} {kernel}×{kernel}"
            + (f"/{conv_stride}" if conv_stride > 1 else ""),
            position=position,
            part=name,
        )
    summed = Feature(main.sources + shortcut.sources, "sum", main.channels, main.size)
    return builder.add(
        f"{unit}.add",
        "add",
        summed,
        main.channels,
        stage=builder.stage_of(1),
        span=block.span,
        label=f"{unit} residual add + ReLU",
        attrs=Attrs(act="relu"),
        place=Place(block.name, 1, block.kind, position, "add"),
    )


def _basic_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    feature = _single_level(features)
    c = block.channels
    for r in range(1, block.count + 1):
        builder.position += 1
        stride = block.stride if r == 1 else 1
        convs: list[ConvStep] = [("conv1", 3, c, stride, "relu"), ("conv2", 3, c, 1, "identity")]
        feature = _residual_unit(builder, block, r, feature, convs, stride)
        builder.trunk.append(feature)
    return [feature]


def _bottleneck_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    feature = _single_level(features)
    c, out = block.channels, block.channels * block.expansion
    for r in range(1, block.count + 1):
        builder.position += 1
        stride = block.stride if r == 1 else 1
        convs: list[ConvStep] = [
            ("conv1", 1, c, 1, "relu"),
            ("conv2", 3, c, stride, "relu"),
            ("conv3", 1, out, 1, "identity"),
        ]
        feature = _residual_unit(builder, block, r, feature, convs, stride)
        builder.trunk.append(feature)
    return [feature]


def _introducing_level(position: int, levels: int) -> int:
    """Level k holds every 2**(levels-k)-th layer from the first; the first such k."""
    return next(k for k in range(1, levels + 1) if (position - 1) % 2 ** (levels - k) == 0)


def _sparse_sources(index: int) -> list[int]:
    """SparseNet rule: the layers at power-of-2 distances before ``index`` (0 = block input)."""
    sources, distance = [], 1
    while distance <= index:
        sources.append(index - distance)
        distance *= 2
    return sources


def _sparse_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    """SparseNet / Sparse ResNet block with interlaced depth levels and aligned connections.

    A layer's inputs are defined once, by the SparseNet rule in the indexing of the level
    that introduces it; each level has its own block input (a transition when the shape
    changes) and its own block output (the aggregate at position L_k + 1 of its indexing).
    """
    agg: Agg = "sum" if block.kind == "sparse_resnet" else "concat"
    width = block.channels if agg == "sum" else 2 * block.channels
    levels = len(features)
    first_stage_position = builder.position + 1
    inputs: list[Feature] = []
    for level, feature in enumerate(features, start=1):
        needs = feature.channels != width or block.stride != 1 or len(feature.sources) > 1
        if needs:
            suffix = f".trans{level}" if levels > 1 else ".trans"
            feature = builder.conv(
                f"{block.name}{suffix}",
                feature,
                width,
                kernel=3,
                stride=block.stride,
                block=block,
                label=f"{block.name} transition 3×3/{block.stride}"
                + (f" (level {level})" if levels > 1 else ""),
                level=level,
                stage=builder.stage_of(level, first_stage_position),
                part="transition",
            )
        inputs.append(feature)

    outputs: dict[int, Feature] = {}

    def at(level: int, index: int) -> Feature:
        step = 2 ** (levels - level)
        return inputs[level - 1] if index == 0 else outputs[(index - 1) * step + 1]

    for position in range(1, block.count + 1):
        builder.position += 1
        level = _introducing_level(position, levels)
        index = (position - 1) // 2 ** (levels - level) + 1
        sources = [at(level, i) for i in _sparse_sources(index)]
        outputs[position] = builder.conv(
            f"{block.name}.{position}",
            merge(sources, agg),
            block.channels,
            kernel=3,
            block=block,
            label=f"{block.name} layer {position} conv 3×3"
            + (f" (level {level})" if levels > 1 else ""),
            level=level,
            position=position,
        )
        if levels == 1:  # what a cascade exit after this layer reads: the aggregate so far
            builder.trunk.append(merge([at(1, i) for i in _sparse_sources(position + 1)], agg))
    return [
        merge(
            [at(level, i) for i in _sparse_sources(block.count // 2 ** (levels - level) + 1)], agg
        )
        for level in range(1, levels + 1)
    ]


BLOCK_BUILDERS: dict[str, Callable[[Builder, Block, list[Feature]], list[Feature]]] = {
    "plain": _plain_block,
    "basic": _basic_block,
    "bottleneck": _bottleneck_block,
    "sparse_resnet": _sparse_block,
    "sparsenet": _sparse_block,
}


def _unit_graph(layers: dict[str, Layer]) -> nx.DiGraph:
    """Units as nodes; base-network edges kept only when stage(src) <= stage(dst)."""
    graph = nx.DiGraph()
    for layer in layers.values():
        for unit in layer.units():
            graph.add_node(
                unit,
                stage=layer.stripe_stages[unit[1]],
                channels=layer.stripes[unit[1]],
                label=layer.label,
                span=layer.span,
            )
        for source_id in layer.inputs:
            source = layers[source_id]
            for j, dst_stage in enumerate(layer.stripe_stages):
                stripes = [j] if layer.channelwise else range(len(source.stripes))
                for i in stripes:
                    if source.stripe_stages[i] <= dst_stage:
                        graph.add_edge((source_id, i), (layer.id, j))
    return graph
