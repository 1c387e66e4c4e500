"""The argument schema of each statement: a table, not a grammar rule per keyword.

Each keyword that takes arguments lists its fields (type, required, positional, valid
choices); :mod:`nestdsl.parse.arguments` checks any statement against its row generically, so
adding an argument is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nestdsl.ast import BLOCK_KINDS

Kind = Literal["int", "name", "shape", "ints", "number"]
"""How an argument's value is read: a positive integer, a bare name, a `(C, H, W)` tuple, a
tuple of positive integers, or a number."""


@dataclass(frozen=True)
class Field:
    """One argument of a statement: its type, whether it is required or positional."""

    name: str
    kind: Kind
    required: bool = False
    positional: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


SCHEMAS: dict[str, tuple[Field, ...]] = {
    "nest": (Field("version", "int", required=True, positional=True, help="`nest 1`"),),
    "network": (Field("name", "name", required=True, positional=True, help="`network NAME`"),),
    "input": (Field("shape", "shape", required=True, help="`shape=(C, H, W)`"),),
    "stem": (
        Field("kind", "name", positional=True, choices=("conv",)),
        Field("channels", "int", required=True, help="`channels=N`"),
        Field("kernel", "int"),
        Field("stride", "int"),
        Field("pool", "name", choices=("none", "max")),
    ),
    "block": (
        Field("name", "name", required=True, positional=True, help="`block NAME KIND ...`"),
        Field(
            "kind",
            "name",
            required=True,
            positional=True,
            choices=BLOCK_KINDS,
            help="`block NAME KIND ...`",
        ),
        Field("count", "int", required=True, help="`count=N`"),
        Field("channels", "int", required=True, help="`channels=N`"),
        Field("stride", "int"),
        Field("expansion", "int"),
    ),
    "head": (
        Field("classes", "int", required=True, help="`classes=N`"),
        Field("pool", "int"),
        Field("hidden", "ints"),
        Field("dropout", "number"),
    ),
}
"""Keyword -> its fields, positional ones in order. `param` and `schedule` have their own
modules, as their items are not fixed arguments."""
