"""`nestdsl experiment GRID.toml`: train a grid of runs and write its results tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestdsl.cli.common import import_torch, user_errors

EXAMPLES = """\b
Examples:
  nestdsl experiment experiments/digits.toml --jobs 2 --out runs/digits
  nestdsl experiment experiments/cifar10.toml --out runs/cifar10
"""


def experiment(
    grid: Annotated[
        Path,
        typer.Argument(
            metavar="GRID.toml", help="The grid file (see docs/results.md).", show_default=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output root: one run directory per cell, results.md (default: runs/<name>).",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, metavar="N", help="Runs trained at a time (processes).")
    ] = 1,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only", help="Train nothing: write the report of the runs finished so far."
        ),
    ] = False,
) -> None:
    """Train every unfinished run of GRID.toml (finished ones are skipped, cut ones resumed)."""
    with user_errors():
        import_torch()
        from nestdsl.experiment import run_experiment

        run_experiment(grid, out, jobs=jobs, report=typer.echo, train=not report_only)


def register(app: typer.Typer) -> None:
    """Add `experiment` to the application."""
    app.command("experiment", epilog=EXAMPLES)(experiment)
