"""The top-level :func:`parse`: text to a checked :class:`~nestdsl.ast.Spec`, or a
:class:`~nestdsl.diagnostics.NestError` holding every error of the file.

It runs the steps in order (parse with recovery, dispatch each statement to its builder, the
whole-file rules) and assembles the spec from the nodes built, with the defaults of optional
statements.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import cast

from lark import Tree

from nestdsl.ast import Block, Head, InputShape, Schedule, Spec, Stem
from nestdsl.diagnostics import NestError, did_you_mean
from nestdsl.parse.bounds import check_bounds
from nestdsl.parse.builders import STATEMENT_BUILDERS
from nestdsl.parse.context import Context
from nestdsl.parse.file_structure import check_counts, check_version_line
from nestdsl.parse.language import DEFAULT_VERSION, KEYWORDS, UNITS_VERSION
from nestdsl.parse.params import mark_broken_params
from nestdsl.parse.prelude import prelude_units
from nestdsl.parse.recovery import parse_tree
from nestdsl.parse.source import file_span, statement_word
from nestdsl.parse.statements import Statement, statements
from nestdsl.parse.units import collect_units
from nestdsl.parse.wording import choices, hint_with_listing


def parse(text: str, path: str = "<string>") -> Spec:
    """Parse `.nest` source into a :class:`Spec`.

    Raises :class:`NestError` holding every syntax, name, type and value error of the file
    (``sources={path: text}``, so it renders with source lines). Whole-spec checks that need
    the schedule (divisibility, block kinds) live in :mod:`nestdsl.checks`.
    """
    check_bounds(text, path)
    ctx = Context(path=path, lines=text.splitlines())
    parsed = parse_tree(text, path)
    ctx.diagnostics.extend(parsed.diagnostics)
    broken = {word for line in parsed.broken_lines if (word := statement_word(line))}
    mark_broken_params(ctx, parsed.broken_lines)
    spec = _build_spec(ctx, text, parsed.tree, broken)
    if ctx.diagnostics or spec is None:
        raise NestError(ctx.diagnostics, {path: text})
    return spec


@dataclass
class _Found:
    """Per keyword, the statements seen and the nodes they built (None where they failed)."""

    statements: dict[str, list[Statement]] = field(default_factory=dict)
    nodes: dict[str, list[object]] = field(default_factory=dict)
    guessed: set[str] = field(default_factory=set)
    """Keywords that a misspelt statement probably meant (not reported missing again)."""

    def first(self, keyword: str, default: object) -> object:
        """The node of the first successful `keyword` statement, else ``default``."""
        return self.nodes.get(keyword, [default])[0]


def _build_spec(ctx: Context, text: str, tree: Tree, broken: set[str]) -> Spec | None:
    every_statement = list(statements(tree, ctx.path))
    check_version_line(ctx, every_statement, broken)
    found_statements = collect_units(ctx, every_statement)
    found = _Found()
    for statement in found_statements:
        _dispatch(ctx, statement, found)
    version = found.first("nest", DEFAULT_VERSION)
    _check_units_version(ctx, version, every_statement)
    optional = {"stem"} if version == UNITS_VERSION else set()
    check_counts(ctx, found.statements, broken | found.guessed | optional)
    if ctx.diagnostics:
        return None
    span = file_span(ctx.path, ctx.lines)
    spans = {f"params.{k}": v for k, v in ctx.param_spans.items() if k in ctx.params}
    if "network" in found.statements:
        spans["network"] = found.statements["network"][0].span
    return Spec(
        span=span,
        spans=spans,
        version=cast(int, version),
        name=cast(str, found.first("network", _default_name(ctx.path))),
        path=ctx.path,
        source=text,
        params=cast(dict[str, int | float | str], ctx.params),
        input=cast(InputShape, found.nodes["input"][0]),
        stem=cast(Stem | None, found.first("stem", None)),
        units={**prelude_units(), **ctx.units},
        blocks=cast(tuple[Block, ...], tuple(found.nodes["block"])),
        head=cast(Head, found.nodes["head"][0]),
        schedule=cast(Schedule, found.first("schedule", Schedule(span=span))),
    )


def _check_units_version(ctx: Context, version: object, every: list[Statement]) -> None:
    """`unit` definitions are new in `nest 2`; a `nest 1` file must not use them."""
    if version == UNITS_VERSION:
        return
    for statement in every:
        if statement.keyword == "unit":
            ctx.error(
                "E402",
                f"`unit` definitions need `nest {UNITS_VERSION}`",
                statement.keyword_span,
                f"change the first line to `nest {UNITS_VERSION}`",
            )


def _dispatch(ctx: Context, statement: Statement, found: _Found) -> None:
    """Build one statement with its keyword's builder, or report an unknown keyword."""
    keyword = statement.keyword
    if keyword not in KEYWORDS:
        ctx.error(
            "E101",
            f"unknown statement `{keyword}`",
            statement.keyword_span,
            hint_with_listing(
                did_you_mean(keyword, KEYWORDS), f"statements are {choices(KEYWORDS)}"
            ),
        )
        found.guessed.update(difflib.get_close_matches(keyword, KEYWORDS, n=1, cutoff=0.6))
        return
    found.statements.setdefault(keyword, []).append(statement)
    node = STATEMENT_BUILDERS[keyword](ctx, statement)
    if node is not None:
        found.nodes.setdefault(keyword, []).append(node)


def _default_name(path: str) -> str:
    """The network is named after its file unless a `network` statement says otherwise."""
    if path.startswith("<"):
        return "network"
    return PurePath(path).stem
