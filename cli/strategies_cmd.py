"""`nestdsl strategies`: every value `train --strategy` accepts, and which ones need extras."""

from __future__ import annotations

import typer


def strategies_command() -> None:
    """List the training strategies: the paper's five, the sgd-sum control, torchjd's (mtl:*)."""
    from nestdsl.optim import BASE_STRATEGIES, CONTROLS, MTL_STRATEGIES, torchjd_available

    typer.echo("the paper's strategies (always available):")
    for name in BASE_STRATEGIES:
        typer.echo(f"  {name}")
    typer.echo("controls (always available):")
    for name in CONTROLS:
        typer.echo(f"  {name}")
    state = "installed" if torchjd_available() else "not installed: pip install 'nestdsl[mtl]'"
    typer.echo(f"torchjd comparators ({state}):")
    for name in MTL_STRATEGIES:
        typer.echo(f"  {name}")


def register(app: typer.Typer) -> None:
    """Add `strategies` to the application."""
    app.command("strategies", epilog="\b\nExample:\n  nestdsl strategies\n")(strategies_command)
