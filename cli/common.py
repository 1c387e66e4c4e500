"""What every command shares: turning a NestError into diagnostics on stderr and exit 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from nestdsl.diagnostics import NestError

SpecArgument = Annotated[
    Path,
    typer.Argument(
        exists=True,
        file_okay=True,
        dir_okay=False,
        readable=True,
        metavar="SPEC",
        help="The `.nest` spec file.",
        show_default=False,
    ),
]
"""The SPEC argument of `compile` and `draw`, validated by Typer (exit 2 when missing)."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Report a NestError as rendered diagnostics on stderr and exit 1 (never a traceback)."""
    try:
        yield
    except NestError as error:
        typer.echo(error.render(), err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(code=130) from None
