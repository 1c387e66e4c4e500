"""Small specs written inline, shared by the IR, compiler and property tests."""

from __future__ import annotations

from pathlib import Path

import nestdsl
from nestdsl.ast import Spec

SPECS = Path(__file__).resolve().parent.parent / "specs"


def shipped_specs() -> list[Path]:
    """Every spec in specs/ but the zoo (used to parametrize invariant tests that run the
    networks; the zoo's ImageNet-sized networks are checked on the IR instead)."""
    return sorted(SPECS.glob("*.nest"))


def every_spec() -> list[Path]:
    """Every shipped spec, the zoo (specs/zoo/) included."""
    return sorted(SPECS.rglob("*.nest"))


TEMPLATE = """nest 1
input    shape=({c}, {h}, {h})
stem     conv channels={stem} kernel=3
{blocks}
head     classes={classes}
{schedule}
"""


def small_spec(
    blocks: list[tuple[str, int, int, int]],
    schedule: str = "",
    *,
    stem: int = 8,
    channels: int = 1,
    size: int = 8,
    classes: int = 5,
) -> Spec:
    """A spec from (kind, count, channels, stride) blocks and a schedule expression."""
    lines = "\n".join(
        f"block b{i} {kind} count={count} channels={width} stride={stride}"
        for i, (kind, count, width, stride) in enumerate(blocks, start=1)
    )
    text = TEMPLATE.format(
        c=channels,
        h=size,
        stem=stem,
        blocks=lines,
        classes=classes,
        schedule=f"schedule {schedule}" if schedule else "",
    )
    return nestdsl.loads(text, path="inline.nest")
