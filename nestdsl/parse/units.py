"""`unit` definitions (`nest 2`) and the blocks that repeat them.

A definition is a header statement, body statements (one primitive or unit per line) and
`end`. Bodies are kept unevaluated (:class:`~nestdsl.expr.Expr` trees) because their
arguments depend on each instance: its arguments and its input channels `in`. Blocks of a
unit are built here too, as their arguments are the unit's parameters, not a fixed schema.
"""

from __future__ import annotations

import builtins

from lark import Token, Tree
from lark.visitors import Interpreter
from pydantic import ValidationError

from nestdsl.ast import CONNECTS, SHORTCUTS, Block, Call, UnitDef
from nestdsl.diagnostics import Span, did_you_mean
from nestdsl.expr import Expr
from nestdsl.parse.context import Context, Failed
from nestdsl.parse.expressions import evaluate
from nestdsl.parse.language import KEYWORDS
from nestdsl.parse.source import node_span
from nestdsl.parse.statements import Item, Statement
from nestdsl.parse.wording import choices

RESERVED = ("in", "true", "false")
"""Names every unit body can read: its input channels, and the two booleans (1 and 0)."""

_BLOCK_OPTIONS = ("count", "stride", "connect", "agg", "width")
"""Arguments of a block of a unit that belong to the block, not to the unit."""


def to_expr(tree: Tree, path: str) -> Expr:
    """Turn a parsed expression into an unevaluated :class:`Expr` with spans."""
    return _ToExpr(path).visit(tree)


class _ToExpr(Interpreter[Token, Expr]):
    """One method per grammar rule of expressions; operators fall to ``__default__``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _span(self, tree: Tree) -> Span:
        return node_span(self.path, tree)

    def _args(self, tree: Tree) -> builtins.tuple[Expr, ...]:
        return builtins.tuple(self.visit(c) for c in tree.children if isinstance(c, Tree))

    def int(self, tree: Tree) -> Expr:
        return Expr("literal", self._span(tree), builtins.int(str(tree.children[0])))

    def float(self, tree: Tree) -> Expr:
        return Expr("literal", self._span(tree), builtins.float(str(tree.children[0])))

    def string(self, tree: Tree) -> Expr:
        return Expr("literal", self._span(tree), str(tree.children[0])[1:-1])

    def name(self, tree: Tree) -> Expr:
        return Expr("name", self._span(tree), str(tree.children[0]))

    def paren(self, tree: Tree) -> Expr:
        (inner,) = self._args(tree)
        return inner

    def tuple(self, tree: Tree) -> Expr:
        return Expr("tuple", self._span(tree), args=self._args(tree))

    def call(self, tree: Tree) -> Expr:
        return Expr("call", self._span(tree), str(tree.children[0]), self._args(tree))

    def __default__(self, tree: Tree) -> Expr:
        """The binary operators: `add`, `sub`, `mul`, `div`, `floordiv`."""
        return Expr(str(tree.data), self._span(tree), args=self._args(tree))


def bare_name(item: Item) -> str | None:
    """The word of an item that is a bare name, else None."""
    expr = item.expr
    if expr.data == "name" and isinstance(expr.children[0], Token):
        return str(expr.children[0])
    return None


def collect_units(ctx: Context, statements: list[Statement]) -> list[Statement]:
    """Take `unit` ... `end` definitions out of the statements into ``ctx.units``.

    Returns the remaining (top-level) statements.
    """
    top: list[Statement] = []
    header: Statement | None = None
    body: list[Statement] = []
    for statement in statements:
        if statement.keyword == "unit":
            if header is not None:
                _unclosed(ctx, header, body)
            header, body = statement, []
        elif statement.keyword == "end":
            if header is None:
                ctx.error("E401", "`end` without a `unit`", statement.span, "remove this line")
            else:
                _define(ctx, header, body)
            header = None
        elif header is not None and statement.keyword in KEYWORDS:
            _unclosed(ctx, header, body)  # a top-level statement: the body ended before it
            header = None
            top.append(statement)
        elif header is not None:
            body.append(statement)
        else:
            top.append(statement)
    if header is not None:
        _unclosed(ctx, header, body)
    return top


def _unclosed(ctx: Context, header: Statement, body: list[Statement]) -> None:
    """Report the missing `end`, and define the unit anyway (its uses are not errors too)."""
    ctx.error(
        "E401",
        "unit definition is not closed",
        header.span,
        "end the unit's body with a line `end`",
    )
    _define(ctx, header, body)


def _define(ctx: Context, header: Statement, body: list[Statement]) -> None:
    """Build one definition; errors are recorded and the unit left undefined."""
    items = list(header.items)
    name = bare_name(items[0]) if items and items[0].key is None else None
    if name is None:
        ctx.error("E103", "a unit needs a name", header.span, "write `unit NAME PARAM ...`")
        return
    if name in ctx.units or name in ctx.taken or name in KEYWORDS:
        taken = "is already defined" if name in ctx.units else "is a built-in name"
        ctx.error(
            "E107",
            f"unit `{name}` {taken}",
            items[0].span,
            "give each unit its own name, different from the statements and built-in kinds",
        )
        return
    try:
        params, defaults, options = _header(ctx, name, items[1:])
        calls = tuple(_call_statement(ctx, s) for s in body)
        ctx.units[name] = UnitDef(
            span=header.span,
            spans={"name": items[0].span},
            name=name,
            params=params,
            defaults=defaults,
            body=calls,
            **options,
        )
    except Failed:
        return
    except ValidationError as error:
        problem = error.errors()[0]
        key = str(problem["loc"][0]) if problem["loc"] else "unit"
        ctx.error("E106", f"invalid `{key}` of unit `{name}`: {problem['msg']}", header.span)


_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "shortcut": SHORTCUTS,
    "connect": CONNECTS,
    "agg": ("sum", "concat"),
}


def _header(
    ctx: Context, unit: str, items: list[Item]
) -> tuple[tuple[str, ...], dict[str, Expr], dict[str, object]]:
    """Parameters (positional names are required), defaults, and the unit's options
    (`shortcut`, `post`, and the block defaults `connect`, `agg`, `width`)."""
    params: list[str] = []
    defaults: dict[str, Expr] = {}
    options: dict[str, object] = {}
    options_expr = options
    for item in items:
        word = bare_name(item)
        if item.key == "width":
            options_expr["width"] = to_expr(item.expr, ctx.path)
            continue
        if item.key in ("shortcut", "post", "connect", "agg"):
            if word is None:
                ctx.fail("E104", f"`{item.key}` of unit `{unit}` must be a name", item.span)
            valid = _OPTION_CHOICES.get(item.key, ())
            if valid and word not in valid:
                hint = did_you_mean(word, valid) or f"valid choices: {choices(valid)}"
                ctx.fail("E106", f"unknown {item.key} `{word}` of unit `{unit}`", item.span, hint)
            options[item.key] = word
            continue
        param = item.key if item.key is not None else word
        if param is None:
            ctx.fail(
                "E104",
                f"parameters of unit `{unit}` are names (`width`) or `name=default`",
                item.span,
            )
        if param in params or param in RESERVED:
            what = "reserved" if param in RESERVED else "given twice"
            ctx.fail("E112", f"parameter `{param}` of unit `{unit}` is {what}", item.span)
        params.append(param)
        if item.key is not None:
            defaults[param] = to_expr(item.expr, ctx.path)
    return tuple(params), defaults, options


def _call_statement(ctx: Context, statement: Statement) -> Call:
    """One body line: `PRIMITIVE key=expr ...` or `UNIT key=expr ...`."""
    args: dict[str, Expr] = {}
    spans: dict[str, Span] = {}
    for item in statement.items:
        if item.key is None:
            ctx.fail(
                "E110",
                f"unexpected positional argument in `{statement.keyword}`",
                item.span,
                "arguments inside a unit are written `key=value`",
            )
        if item.key in args:
            ctx.fail("E111", f"argument `{item.key}` is given twice", item.key_span)
        args[item.key] = to_expr(item.expr, ctx.path)
        spans[item.key] = item.span
    return Call(span=statement.span, spans=spans, name=statement.keyword, args=args)


def is_unit_block(ctx: Context, statement: Statement) -> bool:
    """A `block NAME KIND ...` whose KIND is a unit defined in the file."""
    positional = [i for i in statement.items if i.key is None]
    return len(positional) >= 2 and bare_name(positional[1]) in ctx.units


def build_unit_block(ctx: Context, statement: Statement) -> object:
    """`block NAME UNIT count=N [stride=S] [connect=..] [agg=..] [width=C] UNIT-ARGS...`."""
    positional = [i for i in statement.items if i.key is None]
    name, kind = bare_name(positional[0]), bare_name(positional[1])
    assert kind is not None
    unit = ctx.units[kind]
    if name is None or len(positional) > 2:
        ctx.error(
            "E110",
            f"a block of unit `{kind}` takes two positional arguments, its name and `{kind}`",
            statement.span,
            "write the unit's arguments as `key=value`",
        )
        return None
    values: dict[str, object] = {}
    spans: dict[str, Span] = {}
    args: dict[str, object] = {}
    errors = len(ctx.diagnostics)
    for item in statement.items:
        if item.key is None:
            continue
        try:
            if item.key in ("connect", "agg"):
                values[item.key] = bare_name(item) or ""
            elif item.key in _BLOCK_OPTIONS:
                values[item.key] = evaluate(ctx, item.expr)
            elif item.key in unit.params:
                args[item.key] = evaluate(ctx, item.expr)
            else:
                known = [*_BLOCK_OPTIONS, *unit.params]
                hint = did_you_mean(item.key, known) or f"valid arguments: {choices(known)}"
                ctx.error(
                    "E102", f"unknown argument `{item.key}` of unit `{kind}`", item.span, hint
                )
        except Failed:
            continue
        spans[item.key] = item.span
    if "connect" in values and values["connect"] not in CONNECTS:
        hint = f"connections are {choices(CONNECTS)}"
        ctx.error("E106", f"unknown connect `{values['connect']}`", spans["connect"], hint)
        return None
    missing = [p for p in unit.params if p not in args and p not in unit.defaults]
    missing = [p for p in missing if p != "stride"]
    for param in missing:
        ctx.error(
            "E103",
            f"block `{name}` is missing the argument `{param}` of unit `{kind}`",
            statement.span,
            f"add `{param}=...`",
        )
    if "count" not in values:
        ctx.error("E103", f"block `{name}` is missing `count`", statement.span, "add `count=N`")
    if len(ctx.diagnostics) > errors:
        return None
    try:
        return Block(
            span=statement.span,
            spans=spans,
            name=name,
            kind=kind,
            args=args,
            **values,
        )
    except ValidationError as error:
        for problem in error.errors():
            key = str(problem["loc"][0]) if problem["loc"] else ""
            where = spans.get(key, statement.span)
            ctx.error("E204", f"invalid `{key}` in block `{name}`: {problem['msg'].lower()}", where)
        return None
