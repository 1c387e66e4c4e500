"""The `schedule` statement and its algebra of growth steps.

Names are growth steps, `+` joins steps into one simultaneous step, `*` repeats, `( , )` is a
sequence, and several items concatenate. Repetition counts are integers and may be parameters
or arithmetic on them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from lark import Token, Tree
from lark.visitors import Interpreter

from nestdsl.ast import GROWTH_KINDS, GrowthStep, Schedule
from nestdsl.parse.context import Context, Failed
from nestdsl.parse.expressions import OPERATIONS, arithmetic
from nestdsl.parse.language import MAX_STEPS
from nestdsl.parse.source import node_span
from nestdsl.parse.statements import Item, Statement
from nestdsl.parse.wording import choices, type_name


@dataclass(frozen=True)
class _Steps:
    steps: tuple[GrowthStep, ...]


_ScheduleValue = int | _Steps
_LITERAL_WORDS = {"float": "a float", "string": "a string"}


class _ScheduleEvaluator(Interpreter[Token, _ScheduleValue]):
    """Evaluates schedule expressions into growth steps (counts may be parameters): a method
    per grammar rule, spans from the tree's positions."""

    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx

    def steps(self, item: Item) -> tuple[GrowthStep, ...]:
        value = self.eval(item.expr)
        if not isinstance(value, _Steps):
            self.ctx.fail(
                "E104",
                f"a schedule item must be growth steps, got the integer {value}",
                item.span,
                f"growth steps are {choices(GROWTH_KINDS)}; repeat one with e.g. `width * 2`",
            )
        return value.steps

    def eval(self, expr: Tree) -> _ScheduleValue:
        return self.visit(expr)

    def __default__(self, expr: Tree) -> _ScheduleValue:
        """Literals and calls the schedule has no use for."""
        self.ctx.fail(
            "E104",
            f"the schedule cannot use {_LITERAL_WORDS.get(expr.data, f'`{expr.data}`')} here",
            node_span(self.ctx.path, expr),
            "counts in a schedule are integers",
        )

    def int(self, expr: Tree) -> _ScheduleValue:
        return int(str(expr.children[0]))

    def paren(self, expr: Tree) -> _ScheduleValue:
        (inner,) = expr.children
        assert isinstance(inner, Tree)
        return self.eval(inner)

    def name(self, expr: Tree) -> _ScheduleValue:
        span = node_span(self.ctx.path, expr)
        name = str(expr.children[0])
        if name in GROWTH_KINDS:
            return _Steps((GrowthStep(span=span, kinds=(name,)),))
        if name not in self.ctx.params:
            self.ctx.undefined(name, span, GROWTH_KINDS)
        value = self.ctx.params[name]
        if not isinstance(value, int):
            self.ctx.fail(
                "E104",
                f"parameter `{name}` is used as a schedule count but is {type_name(value)}",
                span,
            )
        return value

    def tuple(self, expr: Tree) -> _ScheduleValue:
        """`(a, b, ...)`: a sequence of growth steps."""
        steps: list[GrowthStep] = []
        for child in expr.children:
            assert isinstance(child, Tree)
            value = self.eval(child)
            if not isinstance(value, _Steps):
                self.ctx.fail(
                    "E104",
                    f"a schedule sequence holds growth steps, got the integer {value}",
                    node_span(self.ctx.path, child),
                )
            steps.extend(value.steps)
        return _Steps(tuple(steps))

    def add(self, expr: Tree) -> _ScheduleValue:
        span = node_span(self.ctx.path, expr)
        left, right = self._operands(expr)
        if isinstance(left, int) and isinstance(right, int):
            return left + right
        single = (
            isinstance(left, _Steps)
            and isinstance(right, _Steps)
            and len(left.steps) == 1
            and len(right.steps) == 1
        )
        if not single:
            self.ctx.fail(
                "E104",
                "`+` joins single growth steps into one simultaneous step",
                span,
                "write e.g. `width + depth`; a sequence is written `(width, depth)`",
            )
        assert isinstance(left, _Steps) and isinstance(right, _Steps)
        kinds = left.steps[0].kinds + right.steps[0].kinds
        return _Steps((GrowthStep(span=span, kinds=kinds),))

    def mul(self, expr: Tree) -> _ScheduleValue:
        """`steps * count` or `count * steps`: repetition."""
        span = node_span(self.ctx.path, expr)
        left, right = self._operands(expr)
        if isinstance(left, int) and isinstance(right, int):
            return left * right
        if isinstance(left, _Steps) and isinstance(right, _Steps):
            self.ctx.fail(
                "E104",
                "`*` repeats growth steps a number of times; it cannot multiply two steps",
                span,
                "write e.g. `width * 2` or `(width + depth) * 2`",
            )
        steps, count = (left, right) if isinstance(left, _Steps) else (right, left)
        assert isinstance(steps, _Steps) and isinstance(count, int)
        if count < 1:
            children = expr.children
            count_node = children[1] if isinstance(left, _Steps) else children[0]
            assert isinstance(count_node, Tree)
            self.ctx.fail(
                "E308",
                f"a schedule repetition count must be a positive integer, got {count}",
                node_span(self.ctx.path, count_node),
                "drop the step or repeat it at least once",
            )
        if len(steps.steps) * count > MAX_STEPS:
            self.ctx.fail(
                "E309",
                f"this repetition makes {len(steps.steps) * count} growth steps, "
                f"more than the {MAX_STEPS} supported",
                span,
                "use fewer stages",
            )
        return _Steps(steps.steps * count)

    def _int_only(self, expr: Tree) -> _ScheduleValue:
        """`-`, `/` and `//`: plain integer arithmetic on counts."""
        span = node_span(self.ctx.path, expr)
        left, right = self._operands(expr)
        symbol, operation = OPERATIONS[expr.data]
        if not (isinstance(left, int) and isinstance(right, int)):
            self.ctx.fail(
                "E104",
                f"`{symbol}` cannot be applied to growth steps",
                span,
                "the schedule algebra has `+` (simultaneous), `*` (repeat) and `(a, b)`",
            )
        right_node = expr.children[1]
        assert isinstance(right_node, Tree)
        value = arithmetic(
            self.ctx, symbol, operation, left, right, span, node_span(self.ctx.path, right_node)
        )
        if not isinstance(value, int):
            self.ctx.fail("E104", "schedule counts must be integers", span, "use `//` for division")
        return value

    sub = div = floordiv = _int_only

    def _operands(self, expr: Tree) -> builtins.tuple[_ScheduleValue, _ScheduleValue]:
        left, right = expr.children
        assert isinstance(left, Tree) and isinstance(right, Tree)
        return self.eval(left), self.eval(right)


def build_schedule(ctx: Context, statement: Statement) -> Schedule | None:
    """`schedule ITEM ...`: the growth steps of the items, concatenated (None on errors)."""
    evaluator = _ScheduleEvaluator(ctx)
    steps: list[GrowthStep] = []
    ok = True
    for item in statement.items:
        if item.key is not None:
            ok = False
            ctx.error(
                "E102",
                f"unknown argument `{item.key}` in the `schedule` statement",
                item.key_span,
                "the schedule takes growth steps only, e.g. `schedule width * 2`",
            )
            continue
        try:
            steps.extend(evaluator.steps(item))
        except Failed:
            ok = False
    if ok and len(steps) > MAX_STEPS:
        ok = False
        ctx.error(
            "E309",
            f"the schedule has {len(steps)} growth steps, more than the {MAX_STEPS} supported",
            statement.span,
            "use fewer stages",
        )
    if not ok:
        return None
    spans = {}
    if statement.items:
        first, last = statement.items[0].span, statement.items[-1].span
        spans["steps"] = first.model_copy(
            update={"end_line": last.end_line, "end_column": last.end_column}
        )
    return Schedule(span=statement.span, spans=spans, steps=tuple(steps))
