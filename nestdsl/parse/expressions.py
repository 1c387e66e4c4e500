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
from nestdsl.parse.context import Context, Value
from nestdsl.parse.source import node_span
from nestdsl.parse.wording import type_name

Arithmetic = Callable[[Value, Value], Value]


def _divide(a: Value, b: Value) -> Value:
    return a / b  # type: ignore[operator]


OPERATIONS: dict[str, tuple[str, Arithmetic]] = {
    "add": ("+", lambda a, b: a + b),  # type: ignore[operator]
    "sub": ("-", lambda a, b: a - b),  # type: ignore[operator]
    "mul": ("*", lambda a, b: a * b),  # type: ignore[operator]
    "div": ("/", _divide),
    "floordiv": ("//", lambda a, b: a // b),  # type: ignore[operator]
}
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
    symbol, operation = OPERATIONS[data]
    left, right = expr.children
    assert isinstance(left, Tree) and isinstance(right, Tree)
    a, b = evaluate(ctx, left), evaluate(ctx, right)
    return arithmetic(ctx, symbol, operation, a, b, span, node_span(ctx.path, right))


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
