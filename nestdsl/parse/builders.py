"""Statement builders: the dispatch table from keyword to the function that builds its node.

Statements with fixed arguments are first matched against their schema
(:class:`~nestdsl.parse.arguments.Arguments`) and built only if that succeeded; pydantic
validation errors of the AST node are mapped back to the argument that caused them. `param`
and `schedule` build from their items directly.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from nestdsl.ast import Block, Head, InputShape, Stem
from nestdsl.parse.arguments import Arguments
from nestdsl.parse.context import Context
from nestdsl.parse.language import SUPPORTED_VERSIONS
from nestdsl.parse.params import build_params
from nestdsl.parse.schedule_algebra import build_schedule
from nestdsl.parse.statements import Statement
from nestdsl.parse.units import build_unit_block, is_unit_block

StatementBuilder = Callable[[Context, Statement], object]
"""Builds a statement's node: the AST node or value it contributes, None if it failed (or, for
`param`, contributes nothing but parameters)."""
_ArgumentsBuilder = Callable[[Context, Arguments], object]


def _with_arguments(build: _ArgumentsBuilder) -> StatementBuilder:
    """Match the statement against its schema first; build only if the arguments are valid."""

    def build_statement(ctx: Context, statement: Statement) -> object:
        args = Arguments(ctx, statement)
        return build(ctx, args) if args.ok else None

    return build_statement


def _construct(ctx: Context, model: type[BaseModel], args: Arguments, **values: object) -> object:
    """Build a pydantic node; map any validation error's ``loc`` back to the argument span."""
    span = args.statement.span
    try:
        return model(span=span, spans=args.spans, **values)
    except ValidationError as error:
        for problem in error.errors():
            key = str(problem["loc"][0]) if problem["loc"] else ""
            where = args.spans.get(key, span)
            ctx.error("E204", f"invalid `{key}` in {args.subject}: {problem['msg'].lower()}", where)
        return None


def _model(model: type[BaseModel], *fields: str) -> _ArgumentsBuilder:
    """A builder passing the given arguments (those present) to the node ``model``."""

    def build(ctx: Context, args: Arguments) -> object:
        present = {n: args.values[n] for n in fields if n in args.values}
        return _construct(ctx, model, args, **present)

    return build


_build_stem = _model(Stem, "channels", "kernel", "stride", "pool")
_build_head = _model(Head, "classes", "pool", "hidden", "dropout")
_build_block_node = _model(Block, "name", "kind", "count", "channels", "stride", "expansion")


def _build_input(ctx: Context, args: Arguments) -> object:
    shape = args.values["shape"]
    assert isinstance(shape, tuple)
    channels, height, width = shape
    shape_span = args.spans["shape"]
    args.spans.update(channels=shape_span, height=shape_span, width=shape_span)
    return _construct(ctx, InputShape, args, channels=channels, height=height, width=width)


def _build_block(ctx: Context, args: Arguments) -> object:
    values = args.values
    if "expansion" in values and values["kind"] != "bottleneck":
        ctx.error(
            "E113",
            f"`expansion` applies only to `bottleneck` blocks, but block `{values['name']}` "
            f"is `{values['kind']}`",
            args.spans["expansion"],
            "remove `expansion=...` or make the block `bottleneck`",
        )
        return None
    return _build_block_node(ctx, args)


def _build_version(ctx: Context, args: Arguments) -> object:
    version = args.values["version"]
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        ctx.error(
            "E005",
            f"unsupported language version {version}: this nestdsl reads version {supported}",
            args.spans["version"],
            f"write `nest {SUPPORTED_VERSIONS[-1]}`",
        )
        return None
    return version


def _build_network(ctx: Context, args: Arguments) -> object:
    return args.values["name"]


def _block(ctx: Context, statement: Statement) -> object:
    """A block of a unit defined in the file, or of a built-in kind (a fixed schema)."""
    if is_unit_block(ctx, statement):
        return build_unit_block(ctx, statement)
    return _with_arguments(_build_block)(ctx, statement)


STATEMENT_BUILDERS: dict[str, StatementBuilder] = {
    "nest": _with_arguments(_build_version),
    "network": _with_arguments(_build_network),
    "param": build_params,
    "input": _with_arguments(_build_input),
    "stem": _with_arguments(_build_stem),
    "block": _block,
    "head": _with_arguments(_build_head),
    "schedule": build_schedule,
}
"""Keyword -> builder, one per entry of :data:`~nestdsl.parse.language.KEYWORDS`."""
