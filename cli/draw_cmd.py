"""`nestdsl draw SPEC -o FILE`: the architecture as a diagram like the paper's Figures 2-7.

The format follows the output suffix (svg, png, pdf via Graphviz; dot/gv writes the source,
which needs no Graphviz install). Repeated units are folded into "× n" nodes unless
``--expand`` asks for every layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestdsl.cli.common import SpecArgument, user_errors
from nestdsl.draw import RENDERERS, render, to_dot
from nestdsl.ir import build_ir
from nestdsl.load import load


def draw_command(
    spec: SpecArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            writable=True,
            help=f"The diagram file; its suffix picks the format ({', '.join(RENDERERS)}).",
            show_default=False,
        ),
    ],
    expand: Annotated[
        bool,
        typer.Option(
            "--expand",
            help="Draw every layer instead of folding repeated units into '× n' nodes.",
        ),
    ] = False,
    title: Annotated[
        str | None,
        typer.Option(
            "--title", help="Diagram title (default: network name and stages).", show_default=False
        ),
    ] = None,
) -> None:
    """Draw SPEC's nested architecture: layers, stripes coloured by stage, skips, heads."""
    with user_errors():
        ir = build_ir(load(spec))
        render(to_dot(ir, collapse=not expand, title=title), output)
    typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    """Add `draw` to the application."""
    app.command("draw", no_args_is_help=True)(draw_command)
