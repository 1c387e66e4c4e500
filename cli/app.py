"""The `nestdsl` Typer application: one module per command, registered here."""

from __future__ import annotations

from typing import Annotated

import typer

from nestdsl import __version__
from nestdsl.cli import compile_cmd, draw_cmd, train_cmd

app = typer.Typer(
    name="nestdsl",
    help="Compile, train and draw anytime neural networks written as `.nest` specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (compile_cmd, train_cmd, draw_cmd):
    command.register(app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nestdsl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Compile, train and draw anytime neural networks written as `.nest` specs."""


def main() -> None:
    """Console-script entry point."""
    app()
