"""Lowering blocks of units — the prelude's built-in kinds and a spec's own — into IR layers.

A unit instance is lowered by evaluating its body line by line with the instance's
arguments, the spec's parameters and `in` (the instance's input channels). Primitives are a
dispatch table (:data:`PRIMITIVES`); a convolution followed by `bn` and an activation, or a
`bn` followed by an activation, become one IR layer, so `conv`, `bn`, `relu` lowers exactly
like a built-in kind's convolution. Errors raised inside a body carry a note naming the block
and unit that instantiated it. Every layer's span is the block statement that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from nestdsl import diagnostics
from nestdsl.ast import Block, Call, UnitDef
from nestdsl.diagnostics import NestError
from nestdsl.expr import Value, evaluate
from nestdsl.ir.builder import (
    Attrs,
    Builder,
    Feature,
    Place,
    SourceRule,
    dense_sources,
    interlaced,
    merge,
    sparse_sources,
)
from nestdsl.ir.model import Activation, Layer, Op
from nestdsl.schedule import StagePlan

ACTIVATION_NAMES: tuple[Activation, ...] = (
    "identity",
    "relu",
    "relu6",
    "silu",
    "gelu",
    "hardswish",
    "sigmoid",
    "hardsigmoid",
)

MAX_UNIT_DEPTH = 32
"""Units inside units inside units...: deeper chains are refused (E502) long before they would
overflow Python's stack."""

SOURCE_RULES: dict[str, SourceRule] = {"sparse": sparse_sources, "dense": dense_sources}


@dataclass
class _Draft:
    """A layer not yet added: the next `bn` or activation line may still fuse into it."""

    op: Op
    channels: int
    attrs: Attrs
    part: str


@dataclass
class Instance:
    """One unit instance being lowered: where it sits and what its body can read."""

    builder: Builder
    block: Block
    position: int
    level: int
    prefix: str
    """Layer ids of the instance start with this (`s2.3.`, `s2.3.inner1.`)."""
    env: dict[str, Value]
    trail: tuple[str, ...]
    """The units being lowered, outermost first (to refuse recursion)."""
    feature: Feature
    pending: _Draft | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def current_channels(self) -> int:
        """Channels of what the next body line reads (the pending layer's, if any)."""
        return self.pending.channels if self.pending else self.feature.channels

    def part_name(self, name: str) -> str:
        self.counts[name] = self.counts.get(name, 0) + 1
        return f"{self.prefix}{name}{self.counts[name]}"

    def commit(self) -> None:
        """Add the pending layer to the IR; its output becomes the current feature."""
        draft, self.pending = self.pending, None
        if draft is None:
            return
        block = self.block
        part = draft.part[len(f"{block.name}.{self.position}.") :]
        self.feature = self.builder.add(
            draft.part,
            draft.op,
            self.feature,
            draft.channels,
            stage=self.builder.stage_of(self.level),
            span=block.span,
            label=f"{block.name}.{self.position} {part} ({block.kind})",
            attrs=draft.attrs,
            place=Place(block.name, self.level, block.kind, self.position, part),
        )

    def start(self, op: Op, channels: int, attrs: Attrs, call: Call) -> None:
        self.commit()
        self.pending = _Draft(op, channels, attrs, self.part_name(call.name))


def _args(
    instance: Instance,
    call: Call,
    defaults: Mapping[str, Value],
    words: Mapping[str, Value] | None = None,
) -> dict[str, Value]:
    """The call's arguments evaluated, over ``defaults``; unknown names are errors.
    ``words`` are extra names the arguments may use as values (`gate=hardsigmoid`)."""
    env = {**instance.env, **words} if words else instance.env
    values = dict(defaults)
    for key, expr in call.args.items():
        if key not in defaults:
            hint = diagnostics.did_you_mean(key, defaults)
            listing = ", ".join(f"`{k}`" for k in defaults) or "none"
            diagnostics.fail(
                "E102",
                f"unknown argument `{key}` of `{call.name}`",
                call.span_of(key),
                hint or f"its arguments: {listing}",
            )
        values[key] = evaluate(expr, env)
    return values


def _int(call: Call, values: Mapping[str, Value], key: str, minimum: int = 1) -> int:
    value = values[key]
    if not isinstance(value, int) or value < minimum:
        diagnostics.fail(
            "E104",
            f"`{key}` of `{call.name}` must be an integer of at least {minimum}, got `{value}`",
            call.span_of(key),
            "use `//` for integer division" if isinstance(value, float) else None,
        )
    return value


def _is_flat(layers: Mapping[str, Layer], layer_id: str) -> bool:
    """The layer's output comes from a `flatten` (through 1×1 layers: `linear`, `bn` ...)."""
    seen = {layer_id}
    stack = [layer_id]  # each layer once: dense 1x1 layers make the paths exponentially many
    while stack:
        layer = layers[stack.pop()]
        if layer.op == "flatten":
            return True
        if layer.size == (1, 1) and layer.op != "input":
            fresh = [source for source in layer.inputs if source not in seen]
            seen.update(fresh)
            stack.extend(fresh)
    return False


def _spatial(instance: Instance, call: Call) -> None:
    """Refuse a primitive that needs a spatial layout after `flatten` (commits the pending
    layer, which the primitive's own layer would commit anyway)."""
    instance.commit()
    layers = instance.builder.layers
    if any(_is_flat(layers, source) for source in instance.feature.sources):
        diagnostics.fail(
            "E408",
            f"`{call.name}` cannot follow `flatten`: flattened features have no spatial layout",
            call.span,
            "use `linear` after `flatten`, or move `flatten` after this line",
        )


def _conv(instance: Instance, call: Call) -> None:
    _spatial(instance, call)
    incoming = instance.current_channels()
    values = _args(
        instance,
        call,
        {
            "channels": incoming,
            "kernel": 3,
            "stride": 1,
            "padding": -1,
            "dilation": 1,
            "groups": 1,
            "depthwise": 0,
            "bias": 0,
        },
    )
    channels, kernel = _int(call, values, "channels"), _int(call, values, "kernel")
    dilation = _int(call, values, "dilation")
    padding = _int(call, values, "padding", -1)
    groups = incoming if values["depthwise"] else _int(call, values, "groups")
    if incoming % groups or channels % groups:
        diagnostics.fail(
            "E406",
            f"`{call.name}` with {groups} groups needs input and output channels divisible by "
            f"{groups}, got {incoming} and {channels}",
            call.span,
        )
    plan = instance.builder.plan
    if groups > 1 and groups % plan.width_units:
        diagnostics.fail(
            "E406",
            f"a convolution with {groups} groups cannot be width-nested into stripes of "
            f"{plan.width_units} parts: each stripe must hold whole groups",
            call.span,
            f"use a number of groups divisible by {plan.width_units}",
        )
    attrs = Attrs(
        kernel=kernel,
        stride=_int(call, values, "stride"),
        padding=(kernel - 1) // 2 * dilation if padding < 0 else padding,
        dilation=dilation,
        groups=groups,
        bias=bool(values["bias"]),
    )
    instance.start("conv", channels, attrs, call)


def _bn(instance: Instance, call: Call) -> None:
    _args(instance, call, {})
    draft = instance.pending
    fusable = draft is not None and draft.op == "conv" and not draft.attrs.bn
    if draft is not None and fusable and draft.attrs.act == "identity":
        draft.attrs = replace(draft.attrs, bn=True)
        return
    instance.start("bn", instance.current_channels(), Attrs(), call)


def _activation(instance: Instance, call: Call) -> None:
    _args(instance, call, {})
    act: Activation = next(a for a in ACTIVATION_NAMES if a == call.name)
    draft = instance.pending
    if draft is not None and draft.attrs.act == "identity" and draft.op != "dropout":
        draft.attrs = replace(draft.attrs, act=act)
        return
    instance.start("act", instance.current_channels(), Attrs(act=act), call)


def _layernorm(instance: Instance, call: Call) -> None:
    """LayerNorm over the channels at each pixel: its mean and variance mix every channel,
    so under width nesting stripe 1 would depend on the stripes of later stages."""
    _args(instance, call, {})
    plan = instance.builder.plan
    if plan.width_units > 1:
        diagnostics.fail(
            "E407",
            "`layernorm` cannot be width-nested: its mean and variance over the channels "
            "would mix the stripes of later stages into the earlier ones (a back-edge)",
            call.span,
            "use `bn` (statistics per channel), or nest this network by depth only",
        )
    instance.start("layernorm", instance.current_channels(), Attrs(), call)


def _pool(instance: Instance, call: Call) -> None:
    _spatial(instance, call)
    values = _args(instance, call, {"kernel": 2, "stride": 0, "padding": 0, "size": 0})
    kernel = _int(call, values, "kernel")
    stride = _int(call, values, "stride", 0) or kernel
    attrs = Attrs(
        kernel=kernel,
        stride=stride,
        padding=_int(call, values, "padding", 0),
        output_size=_int(call, values, "size", 0),
    )
    op: Op = "maxpool" if call.name == "maxpool" else "avgpool"
    instance.start(op, instance.current_channels(), attrs, call)


def _dropout(instance: Instance, call: Call) -> None:
    values = _args(instance, call, {"p": 0.5})
    p = values["p"]
    if not isinstance(p, int | float) or not 0 <= p < 1:
        diagnostics.fail("E204", f"`p` of `dropout` must be in [0, 1), got `{p}`", call.span)
    instance.start("dropout", instance.current_channels(), Attrs(dropout=float(p)), call)


def _choice(call: Call, values: Mapping[str, Value], key: str) -> Activation:
    """The activation that argument ``key`` names (`gate=hardsigmoid`)."""
    value = values[key]
    found = next((a for a in ACTIVATION_NAMES if a == value), None)
    if found is None:
        choices = ", ".join(f"`{a}`" for a in ACTIVATION_NAMES)
        diagnostics.fail(
            "E106",
            f"`{key}` of `{call.name}` must name an activation, got `{value}`",
            call.span_of(key),
            diagnostics.did_you_mean(str(value), ACTIVATION_NAMES) or f"valid choices: {choices}",
        )
    assert found is not None
    return found


def _words(instance: Instance, call: Call, keys: tuple[str, ...]) -> dict[str, Value]:
    """Names that arguments ``keys`` may give as values: a bare name there that is not a
    variable is a word (an activation's name, or a misspelling that :func:`_choice` reports)."""
    given = (call.args[k] for k in keys if k in call.args)
    return {
        str(e.value): str(e.value)
        for e in given
        if e.kind == "name" and str(e.value) not in instance.env
    }


def _se(instance: Instance, call: Call) -> None:
    """Squeeze-and-excitation: global average pool, a squeeze FC (1×1 conv with bias) and
    its activation, an excite FC back to the channels with the gate activation, and the
    multiply. Under width nesting the two FCs are channel-mixing (lower-triangular by the
    stage rule, the squeeze width split into stripes too) and the multiply keeps stripe j."""
    defaults: dict[str, Value] = {"reduction": 4, "squeeze": 0, "act": "relu", "gate": "sigmoid"}
    values = _args(instance, call, defaults, _words(instance, call, ("act", "gate")))
    _spatial(instance, call)
    entry = instance.feature
    if len(entry.sources) > 1:
        diagnostics.fail(
            "E410",
            f"`se` gates one layer, but here it reads {len(entry.sources)} layers "
            f"combined by {entry.agg} (the unit's input)",
            call.span,
            "put a layer (`conv`, `bn` ...) before `se` in the unit",
        )
    squeeze = _int(call, values, "squeeze", 0)
    squeeze = squeeze or entry.channels // _int(call, values, "reduction")
    if squeeze < 1:
        diagnostics.fail(
            "E104",
            f"`se` squeezes {entry.channels} channels to {squeeze}: needs at least 1",
            call.span,
            "use a smaller `reduction` or give `squeeze=...`",
        )
    _check_squeeze(instance.builder.plan, call, squeeze)
    name = instance.part_name(call.name)
    pool = _add(instance, f"{name}.pool", "avgpool", entry.channels, Attrs(output_size=1))
    act, gate = _choice(call, values, "act"), _choice(call, values, "gate")
    instance.feature = pool
    _add(instance, f"{name}.squeeze", "conv", squeeze, Attrs(bias=True, act=act))
    excite = _add(instance, f"{name}.excite", "conv", entry.channels, Attrs(bias=True, act=gate))
    instance.feature = Feature(
        (*entry.sources, *excite.sources), "product", entry.channels, entry.size
    )
    instance.pending = _Draft("mul", entry.channels, Attrs(), f"{name}.gate")


def _check_squeeze(plan: StagePlan, call: Call, squeeze: int) -> None:
    """The squeeze layer nests with the stripes, so its width must split like a layer's."""
    units = plan.width_units
    if squeeze % units:
        ratios = ":".join(map(str, plan.stripe_ratios))
        diagnostics.fail(
            "E301",
            f"`se` squeezes to {squeeze} channels, which width nesting splits {ratios} into "
            f"stripes: needs a multiple of {units}",
            call.span,
            f"the squeeze width nests too: e.g. `squeeze={-(-squeeze // units) * units}`",
        )


def _add(instance: Instance, part: str, op: Op, channels: int, attrs: Attrs) -> Feature:
    """Add one layer of a multi-layer primitive now; its output is the current feature."""
    instance.pending = _Draft(op, channels, attrs, part)
    instance.commit()
    return instance.feature


def _flatten(instance: Instance, call: Call) -> None:
    """[C, H, W] -> [C·H·W, 1, 1], channel-major: stripe j of C becomes stripe j of C·H·W."""
    _args(instance, call, {})
    instance.commit()
    feature = instance.feature
    height, width = feature.size
    flat = Attrs(output_size=1)  # the output map is 1×1
    instance.start("flatten", feature.channels * height * width, flat, call)


def _linear(instance: Instance, call: Call) -> None:
    """A fully connected layer, run as a 1×1 convolution on a flat (1×1) input."""
    instance.commit()
    feature = instance.feature
    values = _args(instance, call, {"features": feature.channels, "bias": 1})
    if feature.size != (1, 1):
        diagnostics.fail(
            "E409",
            f"`linear` needs a flat input, got {feature.channels}@"
            f"{feature.size[0]}x{feature.size[1]}",
            call.span,
            "put `flatten` or `avgpool size=1` before it",
        )
    attrs = Attrs(bias=bool(values["bias"]))
    instance.start("conv", _int(call, values, "features"), attrs, call)


PRIMITIVES: dict[str, Callable[[Instance, Call], None]] = {
    "conv": _conv,
    "se": _se,
    "flatten": _flatten,
    "linear": _linear,
    "bn": _bn,
    "layernorm": _layernorm,
    "maxpool": _pool,
    "avgpool": _pool,
    "dropout": _dropout,
    **dict.fromkeys(ACTIVATION_NAMES, _activation),
}
"""Primitive name -> how a body line of it is lowered."""


def _lower_body(instance: Instance, unit: UnitDef) -> Feature:
    """Lower every body line; the body's output feature."""
    for call in unit.body:
        try:
            _lower_call(instance, call)
        except NestError as error:
            raise _with_note(
                error, f"in unit `{unit.name}`, at the line of `{call.name}`"
            ) from None
    instance.commit()
    return instance.feature


def _lower_call(instance: Instance, call: Call) -> None:
    primitive = PRIMITIVES.get(call.name)
    if primitive is not None:
        primitive(instance, call)
        return
    units = instance.builder.spec.units
    if call.name not in units:
        known = [*PRIMITIVES, *units]
        diagnostics.fail(
            "E403",
            f"unknown primitive or unit `{call.name}`",
            call.span,
            diagnostics.did_you_mean(call.name, known) or "define it with `unit` ... `end`",
        )
    if call.name in instance.trail:
        chain = " -> ".join((*instance.trail, call.name))
        diagnostics.fail(
            "E404",
            f"unit `{call.name}` uses itself ({chain})",
            call.span,
            "a unit's body cannot contain the unit, directly or through other units",
        )
    if len(instance.trail) >= MAX_UNIT_DEPTH:
        diagnostics.fail(
            "E502",
            f"units are nested more than {MAX_UNIT_DEPTH} deep: "
            f"{instance.trail[0]} -> ... -> {instance.trail[-1]} -> {call.name}",
            call.span,
            "call the inner units from fewer levels (lowering recurses once per level)",
        )
    instance.commit()
    inner = units[call.name]
    child = Instance(
        builder=instance.builder,
        block=instance.block,
        position=instance.position,
        level=instance.level,
        prefix=f"{instance.part_name(call.name)}.",
        env={},
        trail=(*instance.trail, call.name),
        feature=instance.feature,
    )
    child.env = _environment(child, inner, call, instance.env)
    instance.feature = _instantiate(child, inner)


def _environment(
    instance: Instance, unit: UnitDef, call: Call, outer: Mapping[str, Value]
) -> dict[str, Value]:
    """What the unit's body reads: spec parameters, its arguments, `in`, `true`/`false`."""
    env: dict[str, Value] = dict(instance.builder.spec.params)
    env.update({"in": instance.feature.channels, "true": 1, "false": 0})
    caller = {"in": outer.get("in", instance.feature.channels), **outer}
    for param in unit.params:
        if param in call.args:
            env[param] = evaluate(call.args[param], caller)
        elif param in unit.defaults:
            env[param] = evaluate(unit.defaults[param], env)
        else:
            diagnostics.fail(
                "E103",
                f"`{unit.name}` is missing the argument `{param}`",
                call.span,
                f"add `{param}=...`",
            )
    unknown = [k for k in call.args if k not in unit.params]
    if unknown:
        diagnostics.fail(
            "E102",
            f"unknown argument `{unknown[0]}` of unit `{unit.name}`",
            call.span_of(unknown[0]),
            diagnostics.did_you_mean(unknown[0], unit.params),
        )
    return env


def _instantiate(instance: Instance, unit: UnitDef) -> Feature:
    """Lower the body, then the unit's shortcut (a projection is placed before the body, as
    it reads only the unit's input)."""
    entry = instance.feature
    first = len(instance.builder.layers)
    body = _lower_body(instance, unit)
    before = len(instance.builder.layers)
    output = _shortcut(instance, unit, entry, body)
    if len(instance.builder.layers) - before == 2:  # a projection and the sum
        _move(instance.builder, before, first)
    return output


def _move(builder: Builder, source: int, target: int) -> None:
    """Move the layer inserted at index ``source`` to index ``target`` (order of creation)."""
    items = list(builder.layers.items())
    items.insert(target, items.pop(source))
    builder.layers = dict(items)


def _shortcut(instance: Instance, unit: UnitDef, entry: Feature, body: Feature) -> Feature:
    same = entry.channels == body.channels and entry.size == body.size
    single = len(entry.sources) == 1 or entry.agg == "sum"
    mode = unit.shortcut
    if mode == "none" or (mode == "auto" and not (same and single)):
        return body
    if mode == "concat":
        if entry.size != body.size:
            _shape_error(unit, entry, body, "a concatenation needs the same resolution")
        return merge([entry, body], "concat")
    if mode == "identity" and not (same and single):
        _shape_error(unit, entry, body, "use `shortcut=projection` or keep the shape")
    builder, block = instance.builder, instance.block
    shortcut = entry
    if not (same and single):
        stride = entry.size[0] // body.size[0]
        shortcut = instance.builder.add(
            f"{instance.prefix}proj",
            "conv",
            entry,
            body.channels,
            stage=builder.stage_of(instance.level),
            span=block.span,
            label=f"{block.name}.{instance.position} projection 1×1/{stride}",
            attrs=Attrs(stride=max(stride, 1), bn=True),
            place=_place(instance, "proj"),
        )
    summed = Feature(body.sources + shortcut.sources, "sum", body.channels, body.size)
    act: Activation = next(a for a in ACTIVATION_NAMES if a == unit.post)
    return builder.add(
        f"{instance.prefix}add",
        "add",
        summed,
        body.channels,
        stage=builder.stage_of(instance.level),
        span=block.span,
        label=f"{block.name}.{instance.position} residual add",
        attrs=Attrs(act=act),
        place=_place(instance, "add"),
    )


def _place(instance: Instance, name: str) -> Place:
    block = instance.block
    part = f"{instance.prefix}{name}"[len(f"{block.name}.{instance.position}.") :]
    return Place(block.name, instance.level, block.kind, instance.position, part)


def _shape_error(unit: UnitDef, entry: Feature, body: Feature, help: str) -> None:
    diagnostics.fail(
        "E405",
        f"unit `{unit.name}` changes its shape inside its `{unit.shortcut}` shortcut: "
        f"{entry.channels}@{entry.size[0]}x{entry.size[1]} in, "
        f"{body.channels}@{body.size[0]}x{body.size[1]} out",
        unit.span,
        help,
    )


def _with_note(error: NestError, note: str) -> NestError:
    """The same diagnostics, each with one more note (where the failing code was used)."""
    found = [d.model_copy(update={"notes": (*d.notes, note)}) for d in error.diagnostics]
    return NestError(found, error.sources)


def lower_unit(
    builder: Builder, block: Block, position: int, level: int, feature: Feature, stride: int
) -> Feature:
    """Lower the unit at ``position`` of a block of a user unit."""
    unit = builder.spec.units[block.kind]
    args: dict[str, Value] = dict(block.unit_args(unit))
    if "stride" in unit.params:
        args["stride"] = stride
    instance = Instance(
        builder=builder,
        block=block,
        position=position,
        level=level,
        prefix=f"{block.name}.{position}.",
        env={},
        trail=(unit.name,),
        feature=feature,
    )
    try:
        instance.env = unit_environment(builder, unit, args, feature.channels)
        first = len(builder.layers)
        output = _instantiate(instance, unit)
    except NestError as error:
        where = block.span
        raise _with_note(
            error,
            f"used by block `{block.name}` (unit {position}) at {where}",
        ) from None
    if len(builder.layers) - first == 1 and output.sources == (next(reversed(builder.layers)),):
        return _name_by_position(builder, block, position)
    return output


def unit_environment(
    builder: Builder, unit: UnitDef, args: Mapping[str, Value], channels: int
) -> dict[str, Value]:
    """The names a unit instance's body reads: parameters, arguments, defaults, `in`."""
    env: dict[str, Value] = dict(builder.spec.params)
    env.update({"in": channels, "true": 1, "false": 0, **args})
    for param in unit.params:
        if param not in env and param in unit.defaults:
            env[param] = evaluate(unit.defaults[param], env)
    return env


def _name_by_position(builder: Builder, block: Block, position: int) -> Feature:
    """A unit of one layer is that layer: named `block.position`, like a built-in layer."""
    _layer_id, layer = builder.layers.popitem()
    name = f"{block.name}.{position}"
    builder.layers[name] = replace(layer, id=name, part="")
    return Feature((name,), "sum", layer.channels, layer.size)


def unit_block(builder: Builder, block: Block, features: list[Feature]) -> list[Feature]:
    """A block of units: a `chain`, or `sparse` / `dense` with interlaced depth levels."""
    unit = builder.spec.units[block.kind]
    connect = block.connection(unit)
    total = builder.usage.totals.get("layers", 0) + block.count  # before looping over count
    builder.usage.check("layers", total, block.span_of("count"))
    if connect == "chain":
        (feature,) = features  # checks refuse depth nesting of chain blocks
        for position in range(1, block.count + 1):
            builder.position += 1
            stride = block.stride if position == 1 else 1
            feature = lower_unit(builder, block, position, 1, feature, stride)
            builder.trunk.append(feature)
        return [feature]
    agg = block.agg or unit.agg or ("concat" if connect == "dense" else "sum")
    width = block.width or features[0].channels
    if not block.width and unit.width is not None:
        env = unit_environment(builder, unit, block.unit_args(unit), features[0].channels)
        value = evaluate(unit.width, env)
        assert isinstance(value, int), "the prelude's widths are integers"
        width = value

    def make(position: int, level: int, feature: Feature) -> Feature:
        return lower_unit(builder, block, position, level, feature, 1)

    return interlaced(builder, block, features, agg, width, SOURCE_RULES[connect], make)
