"""Lower a checked AST into the graph IR: layers, stages, and the pruned unit graph.

Built-in block kinds are lowered by a dispatch table (:data:`BLOCK_BUILDERS`), blocks of
user-defined units by :mod:`nestdsl.ir.units`. Every layer is given
its stage when it is created: the stage of its depth level for interlaced depth nesting, of
its cascade exit for the EANN baseline, 1 otherwise; width nesting then splits each layer
into stripes whose units get ``max(layer stage, stripe stage)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx

from nestdsl.ast import Block, Spec, Stem
from nestdsl.ir.builder import Attrs, Builder, Feature, Place, interlaced, sparse_sources
from nestdsl.ir.model import Activation, Agg, Layer, NestIR
from nestdsl.ir.units import unit_block
from nestdsl.schedule import expand


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
    feature = image if spec.stem is None else _stem(builder, spec.stem, image)
    levels = 1 if plan.cascade else plan.depth_levels
    features = [feature] * levels
    for block in spec.blocks:
        features = BLOCK_BUILDERS.get(block.kind, unit_block)(builder, block, features)
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


def _stem(builder: Builder, stem: Stem, image: Feature) -> Feature:
    """`nest 1`'s stem: conv, BatchNorm, ReLU, and an optional 3×3/2 max-pool."""
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
    return feature


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
        attrs=Attrs(output_size=head.pool, hidden=head.hidden, dropout=head.dropout),
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


def _sparse_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    """SparseNet / Sparse ResNet: 3×3 conv layers connected at power-of-2 distances."""
    agg: Agg = "sum" if block.kind == "sparse_resnet" else "concat"
    width = block.channels if agg == "sum" else 2 * block.channels
    levels = len(features)

    def make(position: int, level: int, feature: Feature) -> Feature:
        return builder.conv(
            f"{block.name}.{position}",
            feature,
            block.channels,
            kernel=3,
            block=block,
            label=f"{block.name} layer {position} conv 3×3"
            + (f" (level {level})" if levels > 1 else ""),
            level=level,
            position=position,
        )

    return interlaced(builder, block, features, agg, width, sparse_sources, make)


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
