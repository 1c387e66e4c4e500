"""Rules about the file as a whole rather than one statement: the version line comes first,
the required statements are present, single-use statements are used once.

Statements that were probably meant (a broken line, a misspelt keyword) count as present, so
one mistake is not reported twice.
"""

from __future__ import annotations

from nestdsl.parse.context import Context
from nestdsl.parse.language import DEFAULT_VERSION
from nestdsl.parse.source import end_of_file
from nestdsl.parse.statements import Statement

_REQUIRED = ("input", "stem", "head", "block")
_AT_MOST_ONCE = ("nest", "network", "input", "stem", "head", "schedule")
_EXAMPLES = {
    "input": "input shape=(3, 32, 32)",
    "stem": "stem conv channels=16",
    "block": "block s1 basic count=2 channels=16",
    "head": "head classes=10",
}


def check_version_line(ctx: Context, statements: list[Statement], broken: set[str]) -> None:
    """`nest 1` must come first, so that the format can evolve."""
    if "nest" in broken:
        return
    for index, statement in enumerate(statements):
        if statement.keyword == "nest" and index > 0:
            ctx.error(
                "E004",
                "the version line `nest` must be the first statement of the file",
                statement.span,
                "move it to the top of the file",
            )
    if not statements or statements[0].keyword != "nest":
        if any(s.keyword == "nest" for s in statements):
            return
        span = statements[0].span if statements else end_of_file(ctx.path, ctx.lines)
        ctx.error(
            "E004",
            "missing version line: a spec must start with `nest 1`",
            span,
            f"add `nest {DEFAULT_VERSION}` as the first line",
        )


def check_counts(ctx: Context, seen: dict[str, list[Statement]], excused: set[str]) -> None:
    """Required statements present; single-use statements used once.

    ``seen``: the statements of each keyword; ``excused``: keywords not to report missing
    (those of broken lines and those a misspelt keyword probably meant).
    """
    for keyword in _AT_MOST_ONCE:
        found = seen.get(keyword, [])
        for extra in found[1:]:
            ctx.error(
                "E108",
                f"duplicate `{keyword}` statement: a spec has at most one",
                extra.keyword_span,
                f"the first `{keyword}` is at line {found[0].span.line}; remove one of them",
            )
    for keyword in _REQUIRED:
        if keyword in seen or keyword in excused:
            continue
        what = "at least one `block`" if keyword == "block" else f"`{keyword}`"
        ctx.error(
            "E109",
            f"missing {what} statement",
            end_of_file(ctx.path, ctx.lines),
            f"add e.g. `{_EXAMPLES[keyword]}`",
        )
