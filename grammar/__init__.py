"""The Lark grammar of the `.nest` language, shipped as package data."""

from importlib.resources import files


def grammar_text() -> str:
    """The grammar source, read from the installed package (works outside the checkout)."""
    return (files(__name__) / "nest.lark").read_text(encoding="utf-8")
