"""Matching one statement's items against its schema, and reading each argument's value.

Positional values are taken in order, `key=value` items by name; unknown, repeated, missing
and surplus arguments are reported with the statement's name and a suggestion, and each value
is converted by its field's kind (integer, name or shape).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from lark import Tree

from nestdsl.diagnostics import Span, did_you_mean
from nestdsl.parse.context import Context, Failed, Value
from nestdsl.parse.expressions import evaluate
from nestdsl.parse.schemas import SCHEMAS, Field, Kind
from nestdsl.parse.source import text_under
from nestdsl.parse.statements import Item, Statement
from nestdsl.parse.wording import choices, hint_with_listing, show, type_name

_POSITIVE_HELP = {"stride": "use `stride=1` to keep the resolution, `stride=2` to halve it"}


class Arguments:
    """The values and spans of one statement's arguments, matched against its schema."""

    def __init__(self, ctx: Context, statement: Statement):
        self.ctx = ctx
        self.statement = statement
        self.schema = SCHEMAS[statement.keyword]
        self.values: dict[str, object] = {}
        self.spans: dict[str, Span] = {}
        self.ok = True
        self._match()

    @property
    def subject(self) -> str:
        """How messages name the statement: "block `s1`", "the `stem` statement"."""
        name = self.values.get("name")
        if self.statement.keyword == "block" and isinstance(name, str):
            return f"block `{name}`"
        return f"the `{self.statement.keyword}` statement"

    def _match(self) -> None:
        positional = [f for f in self.schema if f.positional]
        keyed = {f.name: f for f in self.schema if not f.positional}
        extras: list[Item] = []
        suggested: set[str] = set()
        position = 0
        for item in self.statement.items:
            if item.key is None:
                if position < len(positional):
                    self._take(positional[position], item)
                    position += 1
                else:
                    extras.append(item)
                continue
            spec = keyed.get(item.key)
            if spec is None:
                suggested.update(self._unknown_key(item, keyed))
            elif spec.name in self.spans:
                self.ok = False
                self.ctx.error(
                    "E111",
                    f"argument `{item.key}` is given twice in {self.subject}",
                    item.key_span,
                    "remove one of them",
                )
            else:
                self._take(spec, item)
        missing = [
            f
            for f in self.schema
            if f.required and f.name not in self.spans and f.name not in suggested
        ]
        missing_keyed = [f for f in missing if not f.positional]
        for index, item in enumerate(extras):
            paired = missing_keyed[index] if index < len(missing_keyed) else None
            self._too_many(item, positional, list(keyed), paired)
        paired_names = {f.name for f in missing_keyed[: len(extras)]}
        for spec in missing:
            if spec.name in paired_names:
                continue
            self.ok = False
            what = "argument" if not spec.positional else "positional argument"
            self.ctx.error(
                "E103",
                f"{self.subject} is missing the required {what} `{spec.name}`",
                self.statement.span,
                f"add {spec.help}" if spec.help else None,
            )

    def _too_many(
        self, item: Item, positional: list[Field], keyed: list[str], paired: Field | None
    ) -> None:
        """An extra positional value; if a required key is missing, suggest `key=value`."""
        self.ok = False
        keyword = self.statement.keyword
        count = len(positional)
        takes = (
            f"takes {count} positional argument{'s' if count != 1 else ''}"
            if positional
            else "takes no positional arguments"
        )
        hint: str | None
        if paired is not None:
            hint = f"write `{paired.name}={self._text(item)}`"
        else:
            hint = f"arguments are written `key=value`: {choices(keyed)}" if keyed else None
        self.ctx.error(
            "E110", f"unexpected positional argument: `{keyword}` {takes}", item.span, hint
        )

    def _unknown_key(self, item: Item, keyed: dict[str, Field]) -> list[str]:
        """Report an unknown key; return the close matches (so they are not also 'missing')."""
        self.ok = False
        assert item.key is not None
        names = list(keyed)
        listing = f"valid arguments: {choices(names)}" if names else None
        self.ctx.error(
            "E102",
            f"unknown argument `{item.key}` in {self.subject}",
            item.key_span,
            hint_with_listing(did_you_mean(item.key, names), listing),
        )
        return difflib.get_close_matches(item.key, names, n=1, cutoff=0.6)

    def _take(self, spec: Field, item: Item) -> None:
        self.spans[spec.name] = item.span
        try:
            self.values[spec.name] = _CONVERTERS[spec.kind](self, spec, item)
        except Failed:
            self.ok = False

    def _expect_name(self, spec: Field, item: Item) -> str:
        expr = item.expr
        if expr.data != "name":
            self.ctx.fail(
                "E104",
                f"`{spec.name}` of {self.subject} must be a name, got `{self._text(item)}`",
                item.span,
                f"write one of {choices(spec.choices)}" if spec.choices else "write a bare name",
            )
        name = str(expr.children[0])
        if spec.choices and name not in spec.choices:
            self.ctx.fail(
                "E106",
                f"unknown {self._label(spec)} `{name}` in {self.subject}",
                item.span,
                hint_with_listing(
                    did_you_mean(name, spec.choices), f"valid choices: {choices(spec.choices)}"
                ),
            )
        return name

    def _label(self, spec: Field) -> str:
        labels = {"kind": f"{self.statement.keyword} kind", "pool": "pool"}
        return labels.get(spec.name, spec.name)

    def _expect_int(self, spec: Field, item: Item) -> int:
        value = evaluate(self.ctx, item.expr)
        return self._check_int(spec.name, value, item.span, item.expr)

    def _check_int(self, name: str, value: Value, span: Span, expr: Tree) -> int:
        if not isinstance(value, int):
            divided = any(t.data == "div" for t in expr.iter_subtrees())
            self.ctx.fail(
                "E104",
                f"`{name}` of {self.subject} must be an integer, "
                f"got {type_name(value)} `{show(value)}`",
                span,
                _int_help(value, divided),
            )
        if value < 1:
            self.ctx.fail(
                "E201",
                f"`{name}` of {self.subject} must be a positive integer, got {value}",
                span,
                _POSITIVE_HELP.get(name, "use a value of at least 1"),
            )
        return value

    def _expect_shape(self, spec: Field, item: Item) -> tuple[int, int, int]:
        value = evaluate(self.ctx, item.expr)
        if not isinstance(value, tuple) or len(value) != 3:
            self.ctx.fail(
                "E104",
                f"`{spec.name}` of {self.subject} must be a tuple of 3 integers "
                f"(channels, height, width), got {type_name(value)}",
                item.span,
                "write e.g. `shape=(3, 32, 32)`",
            )
        parts = [self._check_int(spec.name, v, item.span, item.expr) for v in value]
        return parts[0], parts[1], parts[2]

    def _expect_ints(self, spec: Field, item: Item) -> tuple[int, ...]:
        value = evaluate(self.ctx, item.expr)
        if not isinstance(value, tuple):
            self.ctx.fail(
                "E104",
                f"`{spec.name}` of {self.subject} must be a tuple of integers, "
                f"got {type_name(value)}",
                item.span,
                "write e.g. `hidden=(4096, 4096)` or `hidden=()`",
            )
        return tuple(self._check_int(spec.name, v, item.span, item.expr) for v in value)

    def _expect_number(self, spec: Field, item: Item) -> float:
        value = evaluate(self.ctx, item.expr)
        if not isinstance(value, int | float):
            self.ctx.fail(
                "E104",
                f"`{spec.name}` of {self.subject} must be a number, got {type_name(value)}",
                item.span,
            )
        return float(value)

    def _text(self, item: Item) -> str:
        return text_under(self.ctx.lines, item.span)


def _int_help(value: Value, divided: bool) -> str | None:
    if divided:
        return "use `//` for integer division"
    if isinstance(value, str):
        return "write the number without quotes"
    if isinstance(value, float):
        return "write a whole number"
    return None


_CONVERTERS: dict[Kind, Callable[[Arguments, Field, Item], object]] = {
    "int": Arguments._expect_int,
    "name": Arguments._expect_name,
    "shape": Arguments._expect_shape,
    "ints": Arguments._expect_ints,
    "number": Arguments._expect_number,
}
