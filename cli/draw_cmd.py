"""`nestdsl draw SPEC -o FILE`: the architecture as a diagram like the paper's Figures 2-7.

The format follows the output suffix (svg, png, pdf via Graphviz; dot/gv writes the source,
which needs no Graphviz install). Repeated units are folded into "× n" nodes unless
``--expand`` asks for every layer; ``--stripes`` draws the view that explains the schedule
(stripes and kept unit edges, depth rows, cascade exits), ``--stage K`` highlights one
subnetwork.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nestdsl.cli.common import SpecArgument, user_errors
from nestdsl.files import check_output

FORMATS = (".svg", ".png", ".pdf", ".dot", ".gv")
"""The suffixes `draw` writes (nestdsl.draw.RENDERERS, named here so help needs no import)."""

EXAMPLES = """\b
Examples:
  nestdsl draw specs/digits_width_depth.nest -o arch.svg
  nestdsl draw specs/digits_width.nest -o arch.dot --expand
  nestdsl draw specs/digits_depth.nest -o levels.svg --stripes
"""


def draw_command(
    spec: SpecArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help=f"The diagram file; its suffix picks the format ({', '.join(FORMATS)}).",
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
    stripes: Annotated[
        bool | None,
        typer.Option(
            "--stripes/--no-stripes",
            help="Draw how the nesting works, picked by the schedule: width as stripe cells "
            "with the kept unit-to-unit edges (Figure 5), depth as a row per level (Figure 3), "
            "width-depth as rows of stripes (Figures 6-7), a cascade as trunk and exits "
            "(Figure 2). With --expand: every unit edge. Default: on for small "
            "width-nested specs.",
            show_default=False,
        ),
    ] = None,
    show_pruned: Annotated[
        bool,
        typer.Option(
            "--show-pruned", help="With --stripes: also draw the pruned back-edges, greyed."
        ),
    ] = False,
    stage: Annotated[
        int | None,
        typer.Option(
            "--stage",
            metavar="K",
            help="Highlight the subnetwork of stage K and fade the rest.",
            show_default=False,
        ),
    ] = None,
    title: Annotated[
        str | None,
        typer.Option(
            "--title",
            metavar="TEXT",
            help="Diagram title (default: network name and stages).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Draw SPEC's nested architecture: layers, stripes coloured by stage, skips, heads."""
    with user_errors():
        from nestdsl.draw import render, to_dot
        from nestdsl.ir import build_ir
        from nestdsl.load import load

        check_output(output)
        ir = build_ir(load(spec))
        dot = to_dot(
            ir,
            collapse=not expand,
            title=title,
            stripes=stripes,
            show_pruned=show_pruned,
            stage=stage,
        )
        render(dot, output)
    typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    """Add `draw` to the application."""
    app.command("draw", no_args_is_help=True, epilog=EXAMPLES)(draw_command)
