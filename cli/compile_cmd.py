"""`nestdsl compile SPEC`: check a spec and report, per stage, what nesting costs.

The default artifact is a per-stage table (sizes, parameters, FLOPs) because that is what a
user designing a schedule iterates on; ``--emit`` switches to other artifacts (the IR dump,
machine-readable JSON, a ``torch.export`` program of one stage). Artifacts go to stdout or
``-o FILE``; diagnostics and "wrote ..." notices go to stderr so pipes stay clean.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from nestdsl.ast import Spec
from nestdsl.cli.common import SpecArgument, user_errors
from nestdsl.cost import StageCost, stage_costs
from nestdsl.diagnostics import Diagnostic, NestError
from nestdsl.ir import NestIR, build_ir, dump_ir
from nestdsl.load import load
from nestdsl.schedule import StagePlan, expand

if TYPE_CHECKING:
    import torch

FOOTNOTE = (
    "FLOPs count multiply-accumulates (MACs) of convolutions and classifiers, one input.",
    "params: D_k deployed alone, with its own head; anytime params: the nested network up to",
    "stage k with heads 1..k; incr. FLOPs: what stage k adds when run after stages 1..k-1.",
)


class Emit(str, Enum):
    """What `compile` writes."""

    table = "table"
    ir = "ir"
    json = "json"
    export = "export"


@dataclass(frozen=True)
class StageRow:
    """One stage of the report: the cost model's numbers plus its growth relative to D1."""

    cost: StageCost
    width: int
    depth: int

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.cost.stage,
            "label": self.cost.label,
            "width": self.width,
            "depth": self.depth,
            "params": self.cost.params,
            "anytime_params": self.cost.anytime_params,
            "flops": self.cost.flops,
            "incremental_flops": self.cost.incremental_flops,
        }


@dataclass(frozen=True)
class Compiled:
    """Everything the emitters may need, built once."""

    spec: Spec
    ir: NestIR
    plan: StagePlan

    def rows(self) -> list[StageRow]:
        return [
            StageRow(
                cost, self.plan.relative_width(cost.stage), self.plan.relative_depth(cost.stage)
            )
            for cost in stage_costs(self.ir)
        ]


def human(count: int) -> str:
    """Three significant digits with an SI suffix: 950, 1.23K, 35.7M, 4.09G."""
    value, suffixes = float(count), ["", "K", "M", "G", "T", "P"]
    index = 0
    while abs(value) >= 999.5 and index < len(suffixes) - 1:
        value /= 1000
        index += 1
    if index == 0:
        return str(count)
    decimals = 2 if abs(value) < 9.995 else 1 if abs(value) < 99.95 else 0
    return f"{value:.{decimals}f}{suffixes[index]}"


def _header(compiled: Compiled) -> str:
    ir = compiled.ir
    shape = "×".join(str(d) for d in ir.input_shape)
    stages = ir.num_stages
    return (
        f"network {ir.name}: input {shape}, {ir.num_classes} classes, "
        f"{stages} stage{'s' if stages != 1 else ''}"
    )


def _table(compiled: Compiled) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
    )
    for name in ("stage", "size", "width", "depth"):
        table.add_column(name, justify="left" if name == "size" else "right")
    for name in ("params", "anytime params", "FLOPs", "incr. FLOPs"):
        table.add_column(name, justify="right")
    for row in compiled.rows():
        cost = row.cost
        table.add_row(
            str(cost.stage),
            cost.label,
            f"×{row.width}",
            f"×{row.depth}",
            human(cost.params),
            human(cost.anytime_params),
            human(cost.flops),
            human(cost.incremental_flops),
        )
    return table


def emit_table(compiled: Compiled) -> str:
    """The report as plain text: header line, table, footnote (no colour, no trailing blanks)."""
    console = Console(width=120, record=True, file=io.StringIO(), highlight=False)
    console.print(_table(compiled))
    table = [line.rstrip() for line in console.export_text(styles=False).splitlines()]
    while table and not table[-1]:
        table.pop()
    return "\n".join([_header(compiled), *table, "", *FOOTNOTE]) + "\n"


def emit_ir(compiled: Compiled) -> str:
    return dump_ir(compiled.ir)


def emit_json(compiled: Compiled) -> str:
    ir = compiled.ir
    document = {
        "network": ir.name,
        "input_shape": list(ir.input_shape),
        "num_classes": ir.num_classes,
        "flops_unit": "MAC",
        "stages": [row.as_json() for row in compiled.rows()],
    }
    return json.dumps(document, indent=2) + "\n"


TEXT_EMITTERS: dict[Emit, Callable[[Compiled], str]] = {
    Emit.table: emit_table,
    Emit.ir: emit_ir,
    Emit.json: emit_json,
}


def export_program(compiled: Compiled, stage: int, path: Path, weights: Path | None) -> None:
    """Save D_stage as a ``torch.export`` program (load with ``torch.export.load``).

    The batch dimension is dynamic, so the saved program serves any batch size. ``weights``
    (a run directory or a state-dict file) gives the trained parameters; without it the
    program holds freshly initialised ones, which is only useful to inspect the graph.
    """
    import torch

    from nestdsl.compiler import compile as compile_net

    net = compile_net(compiled.ir).eval()
    if weights is not None:
        _load_weights(net, weights)
    sub = net.subnetwork(stage).eval()
    example = torch.zeros(2, *compiled.ir.input_shape)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(sub, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def _load_weights(net: torch.nn.Module, weights: Path) -> None:
    """Load trained weights (never executing pickled code); mismatches are user errors."""
    from nestdsl.train.runs import FINAL, load_tensors

    path = weights / FINAL if weights.is_dir() else weights
    if not path.is_file():
        raise NestError(
            [
                Diagnostic(
                    code="E904",
                    message=f"no weights at `{path}`",
                    help=f"give a run directory holding `{FINAL}` or a state-dict file",
                )
            ]
        )
    state = load_tensors(path)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise NestError(
            [
                Diagnostic(
                    code="E904",
                    message=f"the weights in `{path}` do not fit this spec",
                    help="export with the spec the run was trained on",
                    notes=(str(error).splitlines()[0],),
                )
            ]
        ) from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


def compile_command(
    spec: SpecArgument,
    emit: Annotated[
        Emit,
        typer.Option(
            "--emit",
            "-e",
            help="What to write: the per-stage table, the IR dump, per-stage JSON, or a "
            "torch.export program of one stage (needs -o FILE.pt2).",
            case_sensitive=False,
        ),
    ] = Emit.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            writable=True,
            help="Write the artifact to FILE instead of stdout.",
            show_default=False,
        ),
    ] = None,
    stage: Annotated[
        int | None,
        typer.Option(
            "--stage",
            "-k",
            min=1,
            help="The stage to export with --emit export (default: the last).",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            exists=True,
            help="With --emit export: trained weights, a run directory (its final.pt) or a "
            "state-dict file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check SPEC and print its stages: size, parameters, FLOPs and incremental FLOPs."""
    if emit is Emit.export and output is None:
        raise typer.BadParameter(
            "--emit export writes a binary file; give -o FILE.pt2", param_hint="'--output'"
        )
    if stage is not None and emit is not Emit.export:
        raise typer.BadParameter("--stage only applies to --emit export", param_hint="'--stage'")
    if weights is not None and emit is not Emit.export:
        raise typer.BadParameter(
            "--weights only applies to --emit export", param_hint="'--weights'"
        )
    with user_errors():
        loaded = load(spec)
        compiled = Compiled(loaded, build_ir(loaded), expand(loaded.schedule))
    if emit is Emit.export:
        assert output is not None
        last = compiled.ir.num_stages
        chosen = last if stage is None else stage
        if chosen > last:
            raise typer.BadParameter(
                f"{spec} has {last} stage{'s' if last != 1 else ''}; choose 1..{last}",
                param_hint="'--stage'",
            )
        with user_errors():
            export_program(compiled, chosen, output, weights)
        label = compiled.ir.stage_labels[chosen - 1]
        typer.echo(f"wrote {output} (stage {chosen}, {label})", err=True)
        return
    if emit is Emit.table and output is None and _stdout_console().is_terminal:
        console = _stdout_console()
        console.print(_header(compiled), style="bold")
        console.print(_table(compiled))
        console.print("\n".join(FOOTNOTE), style="dim")
        return
    _write(TEXT_EMITTERS[emit](compiled), output)


def _stdout_console() -> Console:
    """A terminal gets rich's coloured table; pipes and files get the plain recorded text."""
    return Console(highlight=False)


def register(app: typer.Typer) -> None:
    """Add `compile` to the application."""
    app.command("compile", no_args_is_help=True)(compile_command)
