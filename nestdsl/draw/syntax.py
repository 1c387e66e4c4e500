"""DOT syntax shared by the views: quoted ids and sorted attribute lists (deterministic text)."""

from __future__ import annotations

from collections.abc import Mapping


def attrs(attributes: Mapping[str, str]) -> str:
    """`[a="1", b="2"]` with sorted keys; HTML labels (`<…>`) are written unquoted."""
    parts = []
    for key in sorted(attributes):
        value = attributes[key]
        quoted = value if value.startswith("<") else '"' + value.replace('"', '\\"') + '"'
        parts.append(f"{key}={quoted}")
    return "[" + ", ".join(parts) + "]"


def quote(name: str) -> str:
    """A node id as a DOT string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
