"""The `nestdsl` Typer application: one module per command, registered here."""

from __future__ import annotations

import typer

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


def main() -> None:
    """Console-script entry point."""
    app()
