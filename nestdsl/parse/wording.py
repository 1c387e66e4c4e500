"""How messages name things: lists of choices, value types and values as the user wrote them.

Every diagnostic of the parser words choices and values the same way; keeping the phrasing in
one place keeps the messages (and the golden files that pin them) consistent.
"""

from __future__ import annotations

from collections.abc import Sequence


def join_or(words: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c`` (``words`` is not empty)."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def choices(names: Sequence[str]) -> str:
    """The names quoted as code and joined: "`a`, `b` or `c`"."""
    return join_or([f"`{n}`" for n in names])


def hint_with_listing(hint: str | None, listing: str | None) -> str | None:
    """A "did you mean" hint followed by the valid names in parentheses, or whichever exists."""
    return f"{hint} ({listing})" if hint and listing else hint or listing


def type_name(value: object) -> str:
    """The type of an evaluated value, as messages say it: "an integer", "a tuple of 3"."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return "a growth step"


def show(value: object) -> str:
    """An evaluated value written back in `.nest` syntax."""
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if not isinstance(value, tuple) else f"({', '.join(map(show, value))})"
