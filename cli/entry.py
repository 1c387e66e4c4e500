"""The console script's entry: as little as possible runs before Ctrl-C is handled.

``nestdsl`` imports this module, then calls :func:`main`, which imports the application inside
its ``try``: a Ctrl-C while the application (or later PyTorch) is being imported exits 130
like one during a command, instead of printing a traceback.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), what shells report for an interrupted command."""


def main() -> None:
    """Run the `nestdsl` application; Ctrl-C at any moment exits 130 without a traceback."""
    try:
        from nestdsl.cli.app import app

        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
