"""The prelude: the built-in block kinds as `unit` definitions, shipped as package data.

Read once per process; every spec's :attr:`~nestdsl.ast.Spec.units` starts with these.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from nestdsl.ast import UnitDef
from nestdsl.diagnostics import NestError
from nestdsl.parse.context import Context
from nestdsl.parse.recovery import parse_tree
from nestdsl.parse.statements import statements
from nestdsl.parse.units import collect_units

PRELUDE = "<prelude>"


def prelude_text() -> str:
    """The prelude's source, from the installed package."""
    return (files("nestdsl") / "prelude.nest").read_text(encoding="utf-8")


@cache
def prelude_units() -> dict[str, UnitDef]:
    """The prelude's units by name (a broken prelude is a bug, raised as a NestError)."""
    text = prelude_text()
    ctx = Context(path=PRELUDE, lines=text.splitlines(), taken=frozenset())
    parsed = parse_tree(text, PRELUDE)
    ctx.diagnostics.extend(parsed.diagnostics)
    rest = collect_units(ctx, list(statements(parsed.tree, PRELUDE)))
    if ctx.diagnostics or [s.keyword for s in rest] != ["nest"]:
        raise NestError(ctx.diagnostics, {PRELUDE: text})
    return dict(ctx.units)
