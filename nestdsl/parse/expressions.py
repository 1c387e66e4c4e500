"""Evaluation of argument and parameter expressions: literals, parameters and arithmetic.

Expressions are evaluated while the statements are built, in source order, so a value can use
the parameters defined above it. The operator table is shared with the schedule algebra, which
allows the same arithmetic on its repetition counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lark import Token, Tree

from nestdsl.diagnostics import Span
from nestdsl.expr import BINARY, FUNCTIONS
from nestdsl.parse.context import Context, Value
from nestdsl.parse.source import node_span
from nestdsl.parse.wording import choices, type_name

Arithmetic = Callable[[Value, Value], Value]

OPERATIONS: dict[str, tuple[str, Arithmetic]] = BINARY
"""Tree node name -> the operator's symbol (for messages) and its operation."""


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


_LITERALS: dict[str, Callable[[str], Value]] = {"int": int, "float": float, "string": _unquote}


def evaluate(ctx: Context, expr: Tree) -> Value:
    """Evaluate a numeric/string/tuple expression; bare names must be parameters."""
    span = node_span(ctx.path, expr)
    data = expr.data
    if data in _LITERALS:
        (token,) = expr.children
        assert isinstance(token, Token)
        return _LITERALS[data](str(token))
    if data == "name":
        (token,) = expr.children
        name = str(token)
        if name not in ctx.params:
            ctx.undefined(name, span)
        return ctx.params[name]
    if data == "paren":
        (inner,) = expr.children
        assert isinstance(inner, Tree)
        return evaluate(ctx, inner)
    if data == "tuple":
        return tuple(evaluate(ctx, c) for c in expr.children if isinstance(c, Tree))
    if data == "call":
        return _call(ctx, expr, span)
    symbol, operation = OPERATIONS[data]
    left, right = expr.children
    assert isinstance(left, Tree) and isinstance(right, Tree)
    a, b = evaluate(ctx, left), evaluate(ctx, right)
    return arithmetic(ctx, symbol, operation, a, b, span, node_span(ctx.path, right))


def _call(ctx: Context, expr: Tree, span: Span) -> Value:
    """`max(a, b, ...)` / `min(...)` on numbers."""
    function, *args = expr.children
    name = str(function)
    if name not in FUNCTIONS:
        ctx.fail(
            "E105", f"unknown function `{name}`", span, f"functions are {choices(list(FUNCTIONS))}"
        )
    values = [evaluate(ctx, a) for a in args if isinstance(a, Tree)]
    numbers = [v for v in values if isinstance(v, int | float)]
    if len(numbers) != len(values):
        ctx.fail("E104", f"`{name}` needs numbers, got {', '.join(map(type_name, values))}", span)
    return FUNCTIONS[name](numbers)


def arithmetic(
    ctx: Context, symbol: str, operation: Arithmetic, a: Value, b: Value, span: Span, right: Span
) -> Value:
    """Apply a binary operator, reporting non-numbers and division by zero."""
    numbers = (int, float)
    if symbol == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (isinstance(a, numbers) and isinstance(b, numbers)):
        ctx.fail(
            "E104",
            f"`{symbol}` needs two numbers, got {type_name(a)} and {type_name(b)}",
            span,
        )
    if symbol in ("/", "//") and b == 0:
        ctx.fail("E202", "division by zero", right, "the divisor is 0")
    return operation(a, b)
