"""Lower a checked AST into the graph IR: layers, stages, and the pruned unit graph.

Every block repeats a unit: one of the prelude's built-in kinds or one the spec defines; both
are lowered by :mod:`nestdsl.ir.units`. Every layer is given
its stage when it is created: the stage of its depth level for interlaced depth nesting, of
its cascade exit for the EANN baseline, 1 otherwise; width nesting then splits each layer
into stripes whose units get ``max(layer stage, stripe stage)``.
"""

from __future__ import annotations

import networkx as nx

from nestdsl.ast import Spec, Stem
from nestdsl.diagnostics import NestError
from nestdsl.ir.builder import Attrs, Builder, Feature, Place
from nestdsl.ir.limits import Limits
from nestdsl.ir.model import Layer, NestIR
from nestdsl.ir.units import unit_block
from nestdsl.schedule import expand


def build_ir(spec: Spec, limits: Limits | None = None) -> NestIR:
    """Lower a checked spec into the IR (the spec must have passed ``nestdsl.checks``).

    Errors of unit bodies and crossed resource ``limits`` (default :class:`Limits`) are a
    :class:`NestError` that renders with the spec's source lines.
    """
    try:
        return _build(spec, limits or Limits())
    except NestError as error:
        raise NestError(error.diagnostics, {spec.path: spec.source}) from None


def _build(spec: Spec, limits: Limits) -> NestIR:
    plan = expand(spec.schedule)
    builder = Builder(spec, plan, limits)
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
        features = unit_block(builder, block, features)
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
