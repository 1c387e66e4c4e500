"""`nestdsl plot RUN_DIR... -o FILE`: figures of finished runs (error vs MACs, priority
orders, deadlines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestdsl.cli.common import import_torch, user_errors

EXAMPLES = """\b
Examples:
  nestdsl plot runs/digits -o flops.svg
  nestdsl plot runs/digits/digits_width_depth --kind priorities --spec digits_width_depth -o p.svg
  nestdsl plot runs/digits --kind deadline --spec digits_width --baseline digits_even_width -o d.png
"""


def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="Finished runs, or folders holding them (an experiment's --out).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="FILE", help="The figure: .svg or .png."),
    ],
    kind: Annotated[
        str,
        typer.Option(
            metavar="flops|priorities|deadline",
            help="Error vs MACs (Figure 9), per-stage error of OSGD priority orders (Figure 8), "
            "or the deadline simulation (Figure 10; prints its table).",
        ),
    ] = "flops",
    spec: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The spec (file name, no suffix) of priorities and deadline.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="deadline: the baseline spec compared with --spec.",
            show_default=False,
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option(metavar="NAME", help="The anytime runs' strategy shown.")
    ] = "osgd",
) -> None:
    """Plot finished runs: accuracy against FLOPs, priority orders or deadlines."""
    with user_errors():
        import_torch()
        from nestdsl.experiment.report import plot_runs

        typer.echo(plot_runs(runs, out, kind=kind, spec=spec, baseline=baseline, strategy=strategy))


def register(app: typer.Typer) -> None:
    """Add `plot` to the application."""
    app.command("plot", epilog=EXAMPLES)(plot)
