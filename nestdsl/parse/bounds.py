"""Bounds on the source text itself, checked before the parser sees it.

Parsing, and every later step that walks expression trees, is recursive and at least linear
in the text: a 30 MB file or `param w = ((((...1...))))` nested thousands deep would take
minutes or overflow Python's stack (a `RecursionError` traceback). Real specs are a few
kilobytes with a handful of operators per line, so both are refused up front with a positioned
error (E007, E008) well inside the sizes that are safe.
"""

from __future__ import annotations

import re

from nestdsl import diagnostics
from nestdsl.parse.source import line_span

MAX_SOURCE_CHARS = 200_000
"""A spec longer than this (about 100 times the largest shipped spec) is refused (E007)."""
MAX_LINE_OPERATORS = 128
"""Operators and opening parentheses in one line; each is a level of recursion (E008)."""

_OPERATOR = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|//|[-+*/(]')
"""Strings and comments are matched whole, so that what is inside them is not counted."""


def check_bounds(text: str, path: str) -> None:
    """Raise a :class:`~nestdsl.diagnostics.NestError` if ``text`` crosses a bound."""
    if len(text) > MAX_SOURCE_CHARS:
        crossed = text.count("\n", 0, MAX_SOURCE_CHARS) + 1
        diagnostics.fail(
            "E007",
            f"the spec is {len(text):,} characters long, more than the "
            f"{MAX_SOURCE_CHARS:,} a spec may have",
            line_span(path, crossed, 1),
            "a spec is a short text file; check that this is the file you meant",
        )
    for number, line in enumerate(text.splitlines(), start=1):
        operators = [m for m in _OPERATOR.finditer(line) if m.group()[0] not in '"#']
        if len(operators) > MAX_LINE_OPERATORS:
            where = operators[MAX_LINE_OPERATORS].start() + 1
            diagnostics.fail(
                "E008",
                f"this line has more than {MAX_LINE_OPERATORS} operators and parentheses",
                line_span(path, number, where),
                "split the expression: give parts of it names with `param`",
            )
