"""The `nestdsl` Typer application: one module per command, registered here.

Command modules import PyTorch only inside the commands that run a network, so ``nestdsl
--help``, ``compile`` and ``draw`` start without it. Help is click's plain formatter
(``rich_markup_mode=None``): at 80 columns it keeps option descriptions on readable lines.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nestdsl import __version__
from nestdsl.cli import (
    compile_cmd,
    draw_cmd,
    eval_cmd,
    experiment_cmd,
    plot_cmd,
    run_cmd,
    strategies_cmd,
    train_cmd,
)

EXAMPLES = """\b
Examples:
  nestdsl compile specs/digits_width.nest
  nestdsl train specs/digits_width.nest --epochs 15 --out runs/dw
  nestdsl draw specs/digits_width_depth.nest -o arch.svg
  nestdsl COMMAND --help
"""

app = typer.Typer(
    name="nestdsl",
    help="Compile, train and draw anytime neural networks written as `.nest` specs.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)

for command in (
    compile_cmd,
    train_cmd,
    draw_cmd,
    strategies_cmd,
    eval_cmd,
    run_cmd,
    experiment_cmd,
    plot_cmd,
):
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
