"""The raw statements of a parse tree: a keyword and its items, each with its span.

The grammar only knows the generic shape ``KEYWORD item*``; this module flattens Lark's tree
into that shape so that the statement builders never walk Lark nodes for anything but the
expressions they evaluate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lark import Token, Tree

from nestdsl.diagnostics import Span
from nestdsl.parse.source import node_span


@dataclass(frozen=True)
class Item:
    """One item of a statement: ``key=expr`` (``key`` set) or a positional ``expr``."""

    key: str | None
    key_span: Span | None
    expr: Tree
    span: Span


@dataclass(frozen=True)
class Statement:
    """One line of the file: its keyword and its items."""

    keyword: str
    keyword_span: Span
    items: tuple[Item, ...]
    span: Span


def statements(tree: Tree, path: str) -> Iterator[Statement]:
    """The statements of the tree, in source order."""
    for statement in tree.children:
        assert isinstance(statement, Tree)
        keyword, *raw_items = statement.children
        assert isinstance(keyword, Token)
        yield Statement(
            str(keyword),
            node_span(path, keyword),
            tuple(_item(raw, path) for raw in raw_items),
            node_span(path, statement),
        )


def _item(raw: Tree | Token, path: str) -> Item:
    assert isinstance(raw, Tree)
    if raw.data == "kwarg":
        key, expr = raw.children
        assert isinstance(key, Token) and isinstance(expr, Tree)
        return Item(str(key), node_span(path, key), expr, node_span(path, expr))
    (expr,) = raw.children
    assert isinstance(expr, Tree)
    return Item(None, None, expr, node_span(path, expr))
