"""Evaluation of argument and parameter expressions: literals, parameters and arithmetic.

Expressions are evaluated while the statements are built, in source order, so a value can use
the parameters defined above it. The operator table is shared with the schedule algebra, which
allows the same arithmetic on its repetition counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lark import Token, Tree
from lark.visitors import Interpreter

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


class _Evaluator(Interpreter[Token, Value]):
    """Evaluates one expression tree: a method per grammar rule, spans from the tree's
    positions; errors are recorded in the context and abandon the value (:class:`Failed`)."""

    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx

    def int(self, tree: Tree) -> Value:
        return int(str(tree.children[0]))

    def float(self, tree: Tree) -> Value:
        return float(str(tree.children[0]))

    def string(self, tree: Tree) -> Value:
        return _unquote(str(tree.children[0]))

    def name(self, tree: Tree) -> Value:
        name = str(tree.children[0])
        if name not in self.ctx.params:
            self.ctx.undefined(name, node_span(self.ctx.path, tree))
        return self.ctx.params[name]

    def paren(self, tree: Tree) -> Value:
        (inner,) = self.visit_children(tree)
        return inner

    def tuple(self, tree: Tree) -> Value:
        return tuple(self.visit(c) for c in tree.children if isinstance(c, Tree))

    def call(self, tree: Tree) -> Value:
        """`max(a, b, ...)` / `min(...)` on numbers."""
        span = node_span(self.ctx.path, tree)
        name = str(tree.children[0])
        if name not in FUNCTIONS:
            listing = f"functions are {choices(list(FUNCTIONS))}"
            self.ctx.fail("E105", f"unknown function `{name}`", span, listing)
        values = [self.visit(a) for a in tree.children if isinstance(a, Tree)]
        numbers = [v for v in values if isinstance(v, int | float)]
        if len(numbers) != len(values):
            got = ", ".join(map(type_name, values))
            self.ctx.fail("E104", f"`{name}` needs numbers, got {got}", span)
        return FUNCTIONS[name](numbers)

    def __default__(self, tree: Tree) -> Value:
        """The binary operators (`add`, `sub`, `mul`, `div`, `floordiv`)."""
        symbol, operation = OPERATIONS[str(tree.data)]
        left, right = tree.children
        assert isinstance(right, Tree)
        a, b = self.visit(left), self.visit(right)
        span, right_span = node_span(self.ctx.path, tree), node_span(self.ctx.path, right)
        return arithmetic(self.ctx, symbol, operation, a, b, span, right_span)


def evaluate(ctx: Context, expr: Tree) -> Value:
    """Evaluate a numeric/string/tuple expression; bare names must be parameters."""
    return _Evaluator(ctx).visit(expr)


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
