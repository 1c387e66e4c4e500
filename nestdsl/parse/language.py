"""The facts of the `.nest` language that several parsing steps share.

The versions this parser reads, the statement keywords (in the order messages list them) and
the schedule length limit live here, so that error wording, argument checking and the driver
agree on them without importing each other.
"""

from __future__ import annotations

SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2)
UNITS_VERSION = 2
DEFAULT_VERSION = 1
"""How a file without a valid version line is read, and the version messages suggest (a
file needs `nest 2` only for `unit` definitions)."""
"""The first version with `unit` definitions (and an optional `stem`)."""
KEYWORDS: tuple[str, ...] = (
    "nest",
    "network",
    "param",
    "input",
    "stem",
    "block",
    "head",
    "schedule",
)
MAX_STEPS = 64
"""Schedules longer than this are surely typos (`width * 100`), and would be huge networks."""
