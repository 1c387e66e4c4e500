"""Unevaluated expressions: the arguments inside `unit` definitions.

A unit's body is evaluated once per instance, when the IR builder knows the instance's
arguments and its input channels (`in`), so its argument expressions are kept as small trees
with spans instead of values. Evaluation errors point at the expression in the definition;
the IR builder adds a note naming the use that instantiated it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nestdsl import diagnostics
from nestdsl.diagnostics import Span

Scalar = int | float | str
Value = Scalar | tuple["Value", ...]
"""What an expression evaluates to."""

BINARY: dict[str, tuple[str, Callable[[Value, Value], Value]]] = {
    "add": ("+", operator.add),
    "sub": ("-", operator.sub),
    "mul": ("*", operator.mul),
    "div": ("/", operator.truediv),
    "floordiv": ("//", operator.floordiv),
}
"""Tree node name -> the operator's symbol (for messages) and its operation."""

FUNCTIONS: dict[str, Callable[[list[float]], float]] = {"max": max, "min": min}
"""Functions callable in expressions, on numbers."""


@dataclass(frozen=True)
class Expr:
    """An expression node: a literal, a name, an operator or a function call."""

    kind: str
    """`literal`, `name`, `tuple`, `call` or a key of :data:`BINARY`."""
    span: Span
    value: int | float | str = 0
    """The literal's value, or the name (of a variable or a function)."""
    args: tuple[Expr, ...] = ()

    def names(self) -> set[str]:
        """Every variable name the expression reads."""
        own = {str(self.value)} if self.kind == "name" else set()
        return own.union(*(a.names() for a in self.args))


def evaluate(expr: Expr, env: Mapping[str, Value]) -> Value:
    """The value of ``expr`` with the variables of ``env``; a :class:`NestError` if invalid."""
    if expr.kind == "literal":
        return expr.value
    if expr.kind == "name":
        name = str(expr.value)
        if name not in env:
            hint = diagnostics.did_you_mean(name, env)
            diagnostics.fail("E105", f"undefined name `{name}`", expr.span, hint)
        return env[name]
    values = [evaluate(a, env) for a in expr.args]
    if expr.kind == "tuple":
        return tuple(values)
    numbers = _numbers(expr, values)
    if expr.kind == "call":
        if str(expr.value) not in FUNCTIONS:
            hint = diagnostics.did_you_mean(str(expr.value), FUNCTIONS)
            diagnostics.fail("E105", f"unknown function `{expr.value}`", expr.span, hint)
        return FUNCTIONS[str(expr.value)](numbers)
    symbol, operation = BINARY[expr.kind]
    if symbol in ("/", "//") and numbers[1] == 0:
        diagnostics.fail("E202", "division by zero", expr.args[1].span, "the divisor is 0")
    return operation(numbers[0], numbers[1])


def _numbers(expr: Expr, values: list[Value]) -> list[float]:
    """The operands as numbers, or an error naming the operator and the operand types."""
    numbers = [v for v in values if isinstance(v, int | float)]
    if len(numbers) != len(values):
        what = f"`{expr.value}`" if expr.kind == "call" else f"`{BINARY[expr.kind][0]}`"
        types = " and ".join(type(v).__name__ for v in values)
        diagnostics.fail("E104", f"{what} needs numbers, got {types}", expr.span)
    return numbers
