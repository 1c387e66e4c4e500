"""Error recovery: report every broken line of a file, not just the first.

Lark's LALR parser stops at the first syntax error. To report them all in one run, the line
holding an error is blanked (its characters replaced by spaces, so every position stays valid)
and the text parsed again, until it parses or the error limit is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

from lark import Tree, UnexpectedInput

from nestdsl.diagnostics import Diagnostic
from nestdsl.parse.lark_parser import lark_parser
from nestdsl.parse.syntax_errors import syntax_diagnostic

_MAX_SYNTAX_ERRORS = 50


@dataclass(frozen=True)
class ParsedTree:
    """The tree of the well-formed lines, the syntax diagnostics and the original text of the
    blanked lines (so that a broken `head` line is not also reported as a missing `head`, nor
    a parameter defined on a broken line as undefined)."""

    tree: Tree
    diagnostics: list[Diagnostic]
    broken_lines: list[str]


def parse_tree(text: str, path: str) -> ParsedTree:
    """Parse, blanking each line with a syntax error and retrying, to report them all."""
    lines = text.splitlines()
    current = text
    diagnostics: list[Diagnostic] = []
    broken: list[str] = []
    blanked: set[int] = set()
    for _ in range(_MAX_SYNTAX_ERRORS):
        try:
            return ParsedTree(lark_parser().parse(current), diagnostics, broken)
        except UnexpectedInput as error:
            diagnostic = syntax_diagnostic(error, path, lines)
            diagnostics.append(diagnostic)
            assert diagnostic.span is not None
            number = diagnostic.span.line
            if number in blanked:
                break
            blanked.add(number)
            if number <= len(lines):
                broken.append(lines[number - 1])
            current = _blank_line(current, number)
    return ParsedTree(Tree("start", []), diagnostics, broken)


def _blank_line(text: str, number: int) -> str:
    """Replace line ``number``'s characters by spaces, keeping every position valid."""
    pieces = text.splitlines(keepends=True)
    if 1 <= number <= len(pieces):
        piece = pieces[number - 1]
        body = piece.rstrip("\r\n")
        pieces[number - 1] = " " * len(body) + piece[len(body) :]
    return "".join(pieces)
