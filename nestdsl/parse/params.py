"""The `param` statement: named values that later statements' expressions may use.

Parameters are evaluated in source order, so later values may use earlier ones. A parameter
that fails (or sits on a line with a syntax error) is remembered as failed, so its uses are not
reported again as undefined names.
"""

from __future__ import annotations

import re

from nestdsl.ast import GROWTH_KINDS
from nestdsl.parse.context import Context, Failed
from nestdsl.parse.expressions import evaluate
from nestdsl.parse.source import statement_word
from nestdsl.parse.statements import Statement
from nestdsl.parse.wording import type_name

_PARAM_NAMES = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=")


def mark_broken_params(ctx: Context, broken_lines: list[str]) -> None:
    """The names a syntactically broken `param` line seems to define count as failed."""
    for line in broken_lines:
        if statement_word(line) == "param":
            ctx.failed_params.update(_PARAM_NAMES.findall(line))


def build_params(ctx: Context, statement: Statement) -> None:
    """`param NAME=expr ...`: evaluated in order, so later values may use earlier ones."""
    for item in statement.items:
        if item.key is None:
            ctx.error(
                "E110",
                "unexpected positional argument: `param` takes `NAME=VALUE` pairs",
                item.span,
                "write e.g. `param w=32`",
            )
            continue
        name, key_span = item.key, item.key_span
        assert key_span is not None
        if name in ctx.params or name in ctx.failed_params:
            first = ctx.param_spans.get(name)
            ctx.error(
                "E112",
                f"parameter `{name}` is defined twice",
                key_span,
                f"the first definition is at line {first.line}" if first else None,
            )
            continue
        if name in GROWTH_KINDS:
            ctx.failed_params.add(name)
            ctx.error(
                "E112",
                f"parameter name `{name}` is reserved for the schedule's growth steps",
                key_span,
                "choose another name",
            )
            continue
        ctx.param_spans[name] = key_span
        try:
            value = evaluate(ctx, item.expr)
        except Failed:
            ctx.failed_params.add(name)
            continue
        if isinstance(value, tuple):
            ctx.failed_params.add(name)
            ctx.error(
                "E104",
                f"parameter `{name}` must be a number or a string, got {type_name(value)}",
                item.span,
            )
            continue
        ctx.params[name] = value
