"""Positions in the source text: spans of tree nodes, of the file and of its end, and the text
under a span.

Diagnostics point at the source; these helpers turn Lark's node positions and raw line numbers
into :class:`~nestdsl.diagnostics.Span` values the same way for every parsing step.
"""

from __future__ import annotations

import re

from lark import Token, Tree

from nestdsl.diagnostics import Span

_FIRST_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def node_span(path: str, node: Tree | Token) -> Span:
    """Where a token or a tree (with propagated positions) lies in the source."""
    where = node if isinstance(node, Token) else node.meta  # both carry the same four fields
    assert where.line is not None and where.column is not None
    assert where.end_line is not None and where.end_column is not None
    return Span(
        file=path,
        line=where.line,
        column=where.column,
        end_line=where.end_line,
        end_column=where.end_column,
    )


def line_span(path: str, line: int, column: int, width: int = 1) -> Span:
    """``width`` characters from ``column`` on one line."""
    return Span(file=path, line=line, column=column, end_line=line, end_column=column + width)


def end_of_file(path: str, lines: list[str]) -> Span:
    """The position just after the last non-blank line (where something is missing)."""
    for number in range(len(lines), 0, -1):
        text = lines[number - 1].rstrip()
        if text:
            return line_span(path, number, len(text) + 1)
    return line_span(path, 1, 1)


def file_span(path: str, lines: list[str]) -> Span:
    """The whole file, first to last character."""
    end_line = max(len(lines), 1)
    end_column = len(lines[-1]) + 1 if lines else 1
    return Span(file=path, line=1, column=1, end_line=end_line, end_column=end_column)


def statement_word(line: str) -> str | None:
    """The keyword a source line starts with, if any (also for lines that failed to parse)."""
    match = _FIRST_WORD.match(line)
    return match.group(1) if match else None


def text_under(lines: list[str], span: Span) -> str:
    """The source text under a span (to quote what the user wrote); a multi-line span is cut
    at the end of its first line."""
    text = lines[span.line - 1] if 1 <= span.line <= len(lines) else ""
    if span.end_line != span.line:
        return text[span.column - 1 :]
    return text[span.column - 1 : span.end_column - 1]
