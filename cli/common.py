"""What every command shares: turning a NestError into diagnostics on stderr and exit 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from nestdsl.diagnostics import NestError


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
