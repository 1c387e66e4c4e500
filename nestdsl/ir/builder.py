"""The IR builder's state and vocabulary: features, op attributes, places, and the
:class:`Builder` that accumulates layers in topological order.

Shared by the built-in block kinds (:mod:`nestdsl.ir.build`) and the lowering of user-defined
units (:mod:`nestdsl.ir.units`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nestdsl import diagnostics
from nestdsl.ast import Block, Spec
from nestdsl.diagnostics import Span
from nestdsl.ir.limits import Limits, Usage
from nestdsl.ir.model import Activation, Agg, Layer, Op
from nestdsl.schedule import StagePlan


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

    def __init__(self, spec: Spec, plan: StagePlan, limits: Limits):
        self.spec = spec
        self.plan = plan
        self.usage = Usage(limits)
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
        if split and channels % self.plan.width_units:
            diagnostics.fail(
                "E301",
                f"layer `{layer_id}` has {channels} channels, which width nesting splits "
                f"{':'.join(map(str, self.plan.stripe_ratios))} into stripes: needs a "
                f"multiple of {self.plan.width_units}",
                span,
            )
        self._count(op, feature, channels, attrs, span, split)
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

    def _count(
        self, op: Op, feature: Feature, channels: int, attrs: Attrs, span: Span, split: bool
    ) -> None:
        """Check the resource limits with this layer added (before anything is allocated)."""
        stripes = len(self.plan.stripe_ratios) if split else 1
        widths = [feature.channels * attrs.output_size**2, *attrs.hidden, channels]
        params = {
            "conv": channels * (feature.channels // attrs.groups) * attrs.kernel**2
            + channels * (attrs.bias + 2 * attrs.bn),
            "bn": 2 * channels,
            "layernorm": 2 * channels,
            "head": sum(a * b + b for a, b in itertools.pairwise(widths)),
        }.get(op, 0)
        height, width = attrs.output(feature.size)
        self.usage.add(
            span,
            params=params,
            activations=channels * height * width,
            layers=1,
            units=stripes,
            edges=stripes * stripes * max(1, len(feature.sources)),
        )

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


LayerMaker = Callable[[int, int, Feature], Feature]
"""Lowers the unit at a block position: (position, depth level, its input) -> its output."""

SourceRule = Callable[[int], list[int]]
"""The indices (0 = block input) a block's layer at ``index`` reads, nearest first."""


def sparse_sources(index: int) -> list[int]:
    """SparseNet rule: the layers at power-of-2 distances before ``index`` (0 = block input)."""
    sources, distance = [], 1
    while distance <= index:
        sources.append(index - distance)
        distance *= 2
    return sources


def dense_sources(index: int) -> list[int]:
    """DenseNet rule: every earlier layer and the block input."""
    return list(range(index - 1, -1, -1))


def _introducing_level(position: int, levels: int) -> int:
    """Level k holds every 2**(levels-k)-th layer from the first; the first such k."""
    return next(k for k in range(1, levels + 1) if (position - 1) % 2 ** (levels - k) == 0)


def interlaced(
    builder: Builder,
    block: Block,
    features: list[Feature],
    agg: Agg,
    width: int,
    rule: SourceRule,
    make: LayerMaker,
) -> list[Feature]:
    """A `sparse` or `dense` block with interlaced depth levels and aligned connections.

    A layer's inputs are defined once, by ``rule`` in the indexing of the level that
    introduces it; each level has its own block input (a 3×3 transition to ``width`` channels
    when the shape changes) and its own block output (the aggregate at position L_k + 1 of
    its indexing).
    """
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
        sources = [at(level, i) for i in rule(index)]
        outputs[position] = make(position, level, merge(sources, agg))
        if levels == 1:  # what a cascade exit after this layer reads: the aggregate so far
            builder.trunk.append(merge([at(1, i) for i in rule(position + 1)], agg))
    return [
        merge([at(level, i) for i in rule(block.count // 2 ** (levels - level) + 1)], agg)
        for level in range(1, levels + 1)
    ]
