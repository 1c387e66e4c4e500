"""Whole-spec checks: what no single statement can know on its own.

The parser validates each statement in isolation; the rules here need the whole spec, mostly
because the schedule decides what the base network must satisfy (a `width * 2` schedule splits
every layer into 1:1:2 stripes, so channel counts must divide by 4). Each check returns
diagnostics instead of raising, so a user sees every problem of a file in one run.
"""

from __future__ import annotations

from collections.abc import Callable

from nestdsl.ast import SPARSE_KINDS, Block, Schedule, Spec
from nestdsl.diagnostics import Diagnostic, Span, error
from nestdsl.schedule import StagePlan, expand

__all__ = ["check"]


def check(spec: Spec) -> list[Diagnostic]:
    """Every problem of a parsed spec that needs the whole spec (never raises)."""
    diagnostics = _unique_block_names(spec) + _spatial_size(spec)
    schedule_problems = _schedule_rules(spec.schedule)
    diagnostics += schedule_problems
    if not schedule_problems:
        plan = expand(spec.schedule)
        for rule in _PLAN_RULES:
            diagnostics += rule(spec, plan)
    return diagnostics


def _unique_block_names(spec: Spec) -> list[Diagnostic]:
    first: dict[str, Block] = {}
    out = []
    for block in spec.blocks:
        if block.name in first:
            out.append(
                error(
                    "E107",
                    f"duplicate block name `{block.name}`",
                    block.span_of("name"),
                    f"block `{block.name}` is already defined at line "
                    f"{first[block.name].span.line}; give each block its own name",
                )
            )
        else:
            first[block.name] = block
    return out


def _spatial_size(spec: Spec) -> list[Diagnostic]:
    """Every downsampling layer needs at least `stride` pixels, or the image collapses."""
    size = min(spec.input.height, spec.input.width)
    layers: list[tuple[str, int, Span]] = []
    if spec.stem is not None:
        layers.append(("the stem", spec.stem.stride, spec.stem.span_of("stride")))
        if spec.stem.pool == "max":
            layers.append(("the stem's max-pool", 2, spec.stem.span_of("pool")))
    layers += [(f"block `{b.name}`", b.stride, b.span_of("stride")) for b in spec.blocks]
    for what, stride, span in layers:
        if stride > size:
            return [
                error(
                    "E203",
                    f"{what} has stride {stride} but its input is only {size} "
                    f"pixel{'s' if size != 1 else ''} across: "
                    "the spatial size would collapse below 1",
                    span,
                    "use a smaller stride here or a larger input `shape`",
                )
            ]
        size = -(-size // stride)
    return []


def _schedule_rules(schedule: Schedule) -> list[Diagnostic]:
    """The schedule's own grammar: no `cascade` mixing, no repeated kinds in one step."""
    out = []
    kinds_used = {k for step in schedule.steps for k in step.kinds}
    if "cascade" in kinds_used and len(kinds_used) > 1:
        others = sorted(kinds_used - {"cascade"})
        culprit = next(s for s in schedule.steps if set(s.kinds) & set(others))
        out.append(
            error(
                "E305",
                "`cascade` cannot be mixed with other growth steps "
                f"({', '.join(f'`{k}`' for k in others)}) in one schedule",
                culprit.span,
                "a cascade (EANN) schedule is `cascade * N` alone; "
                "use `depth` for nested depth growth",
            )
        )
    reported: set[tuple[int, int]] = set()
    for step in schedule.steps:
        position = (step.span.line, step.span.column)
        if position in reported:
            continue
        repeated = sorted({k for k in step.kinds if step.kinds.count(k) > 1})
        if repeated:
            reported.add(position)
            out.append(
                error(
                    "E306",
                    f"a simultaneous step repeats `{repeated[0]}`",
                    step.span,
                    f"write `{repeated[0]} * 2` to grow twice in sequence",
                )
            )
        elif {"width", "even_width"} <= set(step.kinds):
            reported.add(position)
            out.append(
                error(
                    "E307",
                    "a simultaneous step cannot combine `width` and `even_width`",
                    step.span,
                    "pick one way to grow the width",
                )
            )
    return out


def _schedule_text(spec: Spec) -> str:
    """What the user wrote after `schedule`, to quote it in messages."""
    span = spec.schedule.spans.get("steps")
    lines = spec.source.splitlines()
    if span is None or span.line != span.end_line or span.line > len(lines):
        return "the schedule"
    return "`" + lines[span.line - 1][span.column - 1 : span.end_column - 1] + "`"


def _nearest(value: int, unit: int) -> str:
    below, above = (value // unit) * unit, (value // unit + 1) * unit
    return f"{below} or {above}" if below > 0 else f"{above}"


def _width_divisible(spec: Spec, plan: StagePlan) -> list[Diagnostic]:
    units = plan.width_units
    if units == 1:
        return []
    ratios = ":".join(str(r) for r in plan.stripe_ratios)
    schedule = _schedule_text(spec)
    layers = [("the stem", spec.stem.channels, spec.stem.span_of("channels"))] if spec.stem else []
    layers += [
        (f"block `{b.name}`", b.channels, b.span_of("channels")) for b in spec.blocks if b.builtin
    ]
    return [
        error(
            "E301",
            f"{what} has {channels} channels, which {schedule} splits {ratios} into stripes: "
            f"needs a multiple of {units}",
            span,
            f"use {_nearest(channels, units)} channels",
        )
        for what, channels, span in layers
        if channels % units
    ]


def _depth_blocks(spec: Spec, plan: StagePlan) -> list[Diagnostic]:
    if plan.depth_levels == 1 or plan.cascade:
        return []
    schedule = _schedule_text(spec)
    levels = plan.depth_levels
    multiple = 2 ** (levels - 1)
    out = []
    for block in spec.blocks:
        if not block.builtin and block.connection(spec.units[block.kind]) == "chain":
            out.append(
                error(
                    "E302",
                    f"block `{block.name}` is a chain of `{block.kind}` units, but {schedule} "
                    "nests depth by interlacing: a level keeps every 2nd, 4th ... unit, and in "
                    "a chain each unit reads only the one before it, which a shallower level "
                    "would not have",
                    block.span_of("kind"),
                    "add `connect=sparse` or `connect=dense` to the block, or nest by `width`",
                )
            )
        elif block.builtin and block.kind not in SPARSE_KINDS:
            out.append(
                error(
                    "E302",
                    f"block `{block.name}` is `{block.kind}`, but {schedule} nests depth by "
                    "interlacing layers, which needs `sparse_resnet` or `sparsenet` blocks",
                    block.span_of("kind"),
                    "make the block `sparse_resnet` or `sparsenet`, or nest by `width` only",
                )
            )
        elif block.count % multiple:
            out.append(
                error(
                    "E303",
                    f"block `{block.name}` has {block.count} layers, but {schedule} interlaces "
                    f"{levels} depth levels: needs a multiple of {multiple}",
                    block.span_of("count"),
                    f"use count={_nearest(block.count, multiple).replace(' or ', ' or count=')}",
                )
            )
    return out


def _cascade_total(spec: Spec, plan: StagePlan) -> list[Diagnostic]:
    if not plan.cascade:
        return []
    multiple = 2 ** (plan.depth_levels - 1)
    total = sum(b.count for b in spec.blocks)
    if total % multiple == 0:
        return []
    span = spec.schedule.spans.get("steps", spec.schedule.span)
    return [
        error(
            "E304",
            f"the blocks have {total} layers in all, but {_schedule_text(spec)} places "
            f"{plan.depth_levels} exits at doubling depths: needs a multiple of {multiple}",
            span,
            f"change the block counts to total {_nearest(total, multiple)}",
        )
    ]


_PLAN_RULES: tuple[Callable[[Spec, StagePlan], list[Diagnostic]], ...] = (
    _width_divisible,
    _depth_blocks,
    _cascade_total,
)
