"""Text to AST: parse a `.nest` file and build the checked pydantic :class:`~nestdsl.ast.Spec`.

The grammar (``grammar/nest.lark``) only knows the generic shape ``KEYWORD item*``; this
package gives each keyword its meaning through small argument schemas (a table, not a rule per
keyword), so every error can name the statement, point at the exact value and suggest a close
name. Errors are collected, never raised one by one: a syntax error blanks its line and the
parse is retried, so all broken lines of a file are reported in one run, together with the
semantic errors of the lines that did parse.

One module per step: :mod:`~nestdsl.parse.lark_parser` (the LALR parser),
:mod:`~nestdsl.parse.syntax_errors` and :mod:`~nestdsl.parse.recovery` (syntax errors in words,
all of them), :mod:`~nestdsl.parse.statements` (the tree as keyword + items),
:mod:`~nestdsl.parse.expressions` (values and arithmetic), :mod:`~nestdsl.parse.params`,
:mod:`~nestdsl.parse.schedule_algebra`, :mod:`~nestdsl.parse.schemas` and
:mod:`~nestdsl.parse.arguments` (argument checking), :mod:`~nestdsl.parse.builders` (keyword
-> node), :mod:`~nestdsl.parse.file_structure` (whole-file rules) and
:mod:`~nestdsl.parse.driver` (:func:`parse` itself).
"""

from nestdsl.parse.driver import parse
from nestdsl.parse.language import KEYWORDS, MAX_STEPS, SUPPORTED_VERSIONS

__all__ = ["KEYWORDS", "MAX_STEPS", "SUPPORTED_VERSIONS", "parse"]
