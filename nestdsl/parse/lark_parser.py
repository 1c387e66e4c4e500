"""The Lark LALR parser of the `.nest` grammar, built once per process.

The grammar itself is package data (:func:`nestdsl.grammar.grammar_text`); building the parser
is the slow part of parsing, so it is cached here together with the literal text of its
terminals, which syntax errors quote.
"""

from __future__ import annotations

import functools

from lark import Lark

from nestdsl.grammar import grammar_text


@functools.cache
def lark_parser() -> Lark:
    """The LALR parser, built once per process (building it is the slow part)."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


@functools.cache
def literal_terminals() -> dict[str, str]:
    """Terminal name -> its literal text, e.g. ``EQUAL -> =`` and ``__ANON_0 -> //``."""
    out = {}
    for terminal in lark_parser().terminals:
        if terminal.pattern.type == "str":
            out[terminal.name] = terminal.pattern.value
    return out
