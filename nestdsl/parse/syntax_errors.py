"""Lark's syntax errors in words users know.

Lark reports terminal names (``NAME``, ``_NL``, ``$END``, ``__ANON_0``) and the set of
terminals it expected; this module turns one such error into a diagnostic that names the
statement it occurred in, says "end of line" or "a value" instead, and helps with the usual
slips (single quotes, `key: value`).
"""

from __future__ import annotations

from lark import Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from nestdsl import diagnostics
from nestdsl.diagnostics import Diagnostic, Span
from nestdsl.parse.language import KEYWORDS
from nestdsl.parse.lark_parser import literal_terminals
from nestdsl.parse.source import end_of_file, line_span, statement_word
from nestdsl.parse.wording import choices, join_or

_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "_NL": "end of line",
    "$END": "end of file",
}
_VALUE_STARTS = frozenset({"NAME", "INT", "FLOAT", "STRING", "LPAR"})
_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH"})

_CHARACTER_HELP = {
    "'": 'strings are written in double quotes: "text"',
    ":": "arguments are written `key=value`",
    "": 'a statement holds only names, numbers, "strings", `=`, `,`, `(`, `)`, '
    "`+`, `-`, `*`, `/`, `//` and `#` comments",
}


def _describe_expected(names: set[str]) -> str:
    """Turn Lark's set of terminal names into a readable 'a value, `=` or end of line'."""
    names = set(names)
    words: list[str] = []
    if "EQUAL" in names:
        words.append("`=`")
        names.discard("EQUAL")
    if names >= _VALUE_STARTS:
        words.append("a value")
        names -= _VALUE_STARTS
    literals = literal_terminals()
    if names >= _OPERATORS:
        words.append("an operator")
        names -= _OPERATORS | {n for n, v in literals.items() if v == "//"}
    if "_NL" in names:
        names.discard("$END")
    for name in sorted(names, key=lambda n: (n not in _TERMINAL_WORDS, n)):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
        elif name in literals:
            words.append(f"`{literals[name]}`")
    return join_or(words) if words else "something else"


def _describe_token(token: Token) -> str:
    if token.type in ("_NL", "$END"):
        return _TERMINAL_WORDS[token.type]
    return f"`{token.value}`"


def syntax_diagnostic(error: UnexpectedInput, path: str, lines: list[str]) -> Diagnostic:
    """Translate one Lark error into a diagnostic naming the statement it occurred in."""
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        return _unexpected_end(error, path, lines)
    line = error.line if error.line >= 1 else len(lines)
    column = max(error.column, 1)
    text = lines[line - 1] if 1 <= line <= len(lines) else ""
    where = statement_word(text)
    context = f" in `{where}` statement" if where and column > 1 + text.find(where) else ""
    if isinstance(error, UnexpectedCharacters):
        char = text[column - 1] if column <= len(text) else "?"
        return diagnostics.error(
            code="E003",
            message=f"unexpected character `{char}`{context}",
            span=line_span(path, line, column),
            help=_CHARACTER_HELP.get(char, _CHARACTER_HELP[""]),
        )
    assert isinstance(error, UnexpectedToken)
    token = error.token
    width = len(token.value) if token.type != "_NL" else 1
    if not context:
        message = f"expected a statement keyword, found {_describe_token(token)}"
        help_text = "a statement starts with one of " + choices(KEYWORDS)
    else:
        message = f"unexpected {_describe_token(token)}{context}"
        help_text = f"expected {_describe_expected(set(error.expected))}"
    return diagnostics.error(
        code="E001", message=message, span=line_span(path, line, column, width), help=help_text
    )


def _unexpected_end(error: UnexpectedToken, path: str, lines: list[str]) -> Diagnostic:
    """The file ended inside a statement: point just after its last character."""
    span: Span = end_of_file(path, lines)
    where = statement_word(lines[span.line - 1])
    return diagnostics.error(
        code="E002",
        message=f"unexpected end of file in `{where}` statement"
        if where
        else "unexpected end of file",
        span=span,
        help=f"expected {_describe_expected(set(error.expected))}",
    )
