"""Tiny digits-sized specs of each nesting kind, for the deployment tests (quick to export)."""

from __future__ import annotations

BASE = """nest 1
network tiny_{name}
input shape=(1, 8, 8)
stem conv channels=8 kernel=3
{blocks}head classes=10
schedule {schedule}
"""

KINDS = {
    "width": ("block s1 basic count=1 channels=8 stride=2\n", "width * 2"),
    "depth": ("block s1 sparse_resnet count=4 channels=8\n", "depth * 2"),
    "width_depth": ("block s1 sparse_resnet count=4 channels=8\n", "(width, depth) * 1"),
    "cascade": (
        "block s1 sparse_resnet count=2 channels=8\n"
        "block s2 sparse_resnet count=2 channels=16 stride=2\n",
        "cascade * 2",
    ),
}


def spec_text(kind: str) -> str:
    """The tiny spec of nesting ``kind`` (a key of KINDS)."""
    blocks, schedule = KINDS[kind]
    return BASE.format(name=kind, blocks=blocks, schedule=schedule)
