"""What every command shares: turning a NestError (or an OS error) into diagnostics on stderr
and exit 1, Ctrl-C into exit 130, and the SPEC argument."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from nestdsl.cli.entry import INTERRUPTED
from nestdsl.diagnostics import Diagnostic, NestError

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
    """Report a NestError as rendered diagnostics on stderr and exit 1 (never a traceback).

    An OS error that no check foresaw (a disk filling up, a file vanishing) is reported the same
    way, as E905 with the path and the system's reason.
    """
    try:
        yield
    except NestError as error:
        typer.echo(error.render(), err=True)
        raise typer.Exit(code=1) from None
    except OSError as error:
        where = f"`{error.filename}`" if error.filename else "a file"
        diagnostic = Diagnostic(
            code="E905", message=f"cannot write {where}: {error.strerror or error}"
        )
        typer.echo(NestError([diagnostic]).render(), err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(code=INTERRUPTED) from None


def warn(warnings: list[Diagnostic]) -> None:
    """Print warnings (diagnostics of severity warning) on stderr; the command goes on."""
    if warnings:
        typer.echo(NestError(warnings).render(), err=True)


def import_torch() -> None:
    """Import PyTorch with Ctrl-C held back until its native start-up is over.

    A SIGINT that lands inside PyTorch's C++ initialisation can abort the process (exit by
    SIGABRT, no message); blocked for that moment, it is delivered right after the import and
    ends the command like any other Ctrl-C (exit 130).
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        import torch

        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import torch  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
