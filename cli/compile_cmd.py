"""`nestdsl compile SPEC`: check a spec and report, per stage, what nesting costs.

The default artifact is a per-stage table (sizes, parameters, MACs) because that is what a
user designing a schedule iterates on; ``--emit`` switches to other artifacts (the IR dump,
machine-readable JSON, a ``torch.export`` program or an ONNX file of one stage, the chain of
incremental ONNX stage programs). Artifacts go to stdout or ``-o FILE``; diagnostics and
"wrote ..." notices go to stderr so pipes stay clean.
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

from nestdsl import glossary
from nestdsl.cli.common import SpecArgument, import_torch, user_errors
from nestdsl.files import check_output, write_text
from nestdsl.glossary import human

if TYPE_CHECKING:
    from nestdsl.ast import Spec
    from nestdsl.cost import StageCost
    from nestdsl.ir import NestIR
    from nestdsl.schedule import StagePlan

FOOTNOTE = (glossary.PARAMS, glossary.ANYTIME_PARAMS, glossary.MACS, glossary.INCREMENTAL_MACS)

EXAMPLES = """\b
Examples:
  nestdsl compile specs/digits_width.nest
  nestdsl compile specs/digits_width.nest --emit json -o costs.json
  nestdsl compile specs/digits_width.nest -e export -k 2 -o d2.pt2 -w runs/dw
  nestdsl compile specs/digits_width.nest -e onnx -k 2 -o d2.onnx -w runs/dw
  nestdsl compile specs/digits_width.nest -e onnx-stages -o stages/ -w runs/dw
"""


class Emit(str, Enum):
    """What `compile` writes."""

    table = "table"
    ir = "ir"
    json = "json"
    export = "export"
    onnx = "onnx"
    onnx_stages = "onnx-stages"
    spec = "spec"


BINARY_OUTPUTS = {Emit.export: "FILE.pt2", Emit.onnx: "FILE.onnx", Emit.onnx_stages: "DIR"}
"""Emits that write files (never stdout), and what their -o names."""
ONE_STAGE = (Emit.export, Emit.onnx)
"""Emits of one stage, chosen with --stage."""


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
            "macs": self.cost.flops,
            "incremental_macs": self.cost.incremental_flops,
        }


@dataclass(frozen=True)
class Compiled:
    """Everything the emitters may need, built once."""

    spec: Spec
    ir: NestIR
    plan: StagePlan

    def rows(self) -> list[StageRow]:
        from nestdsl.cost import stage_costs

        return [
            StageRow(
                cost, self.plan.relative_width(cost.stage), self.plan.relative_depth(cost.stage)
            )
            for cost in stage_costs(self.ir)
        ]


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
    for name in ("params", "anytime params", "MACs", "incr. MACs"):
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
    from nestdsl.ir import dump_ir

    return dump_ir(compiled.ir)


def emit_json(compiled: Compiled) -> str:
    ir = compiled.ir
    document = {
        "network": ir.name,
        "input_shape": list(ir.input_shape),
        "num_classes": ir.num_classes,
        "stages": [row.as_json() for row in compiled.rows()],
    }
    return json.dumps(document, indent=2) + "\n"


def emit_spec(compiled: Compiled) -> str:
    """The spec's ``.nest`` text (with ``--oracle``: the Oracle, written out in full)."""
    return compiled.spec.source


TEXT_EMITTERS: dict[Emit, Callable[[Compiled], str]] = {
    Emit.table: emit_table,
    Emit.ir: emit_ir,
    Emit.json: emit_json,
    Emit.spec: emit_spec,
}


def export_torch(compiled: Compiled, output: Path, stage: int, weights: Path | None) -> str:
    from nestdsl.trained import export_program

    export_program(compiled.ir, stage, output, weights)
    return f"wrote {output} (stage {stage}, {compiled.ir.stage_labels[stage - 1]})"


def export_onnx(compiled: Compiled, output: Path, stage: int, weights: Path | None) -> str:
    from nestdsl.deploy import export_onnx as export

    check = export(compiled.ir, stage, output, weights)
    return (
        f"wrote {output} (stage {stage}, {compiled.ir.stage_labels[stage - 1]}); onnxruntime "
        f"matches PyTorch on {check.batch} inputs (largest difference {check.max_abs_diff:.1g})"
    )


def export_onnx_stages(compiled: Compiled, output: Path, stage: int, weights: Path | None) -> str:
    from nestdsl.deploy import export_stages

    check = export_stages(compiled.ir, output, weights)
    count = compiled.ir.num_stages
    return (
        f"wrote {output}: manifest.json and {count} stage programs; onnxruntime running the "
        f"chain matches PyTorch's anytime outputs on {check.batch} inputs (largest difference "
        f"{check.max_abs_diff:.1g})"
    )


BINARY_EMITTERS: dict[Emit, Callable[[Compiled, Path, int, Path | None], str]] = {
    Emit.export: export_torch,
    Emit.onnx: export_onnx,
    Emit.onnx_stages: export_onnx_stages,
}
"""Artifacts written to -o with the chosen stage and weights; each returns its notice."""


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    write_text(output, text)
    typer.echo(f"wrote {output}", err=True)


def compile_command(
    spec: SpecArgument,
    emit: Annotated[
        Emit,
        typer.Option(
            "--emit",
            "-e",
            help="What to write: the per-stage table, the IR dump, per-stage JSON, a "
            "torch.export program of one stage (needs -o FILE.pt2), an ONNX file of one stage "
            "(-o FILE.onnx), the chain of incremental ONNX stage programs with a manifest (-o "
            "DIR), or the .nest spec. ONNX needs pip install 'nestdsl[deploy]'.",
            case_sensitive=False,
        ),
    ] = Emit.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
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
            metavar="K",
            help="The stage to export with --emit export or onnx (default: the last).",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            exists=True,
            metavar="PATH",
            help="With --emit export, onnx or onnx-stages: trained weights, a run directory "
            "(its final.pt) or a state-dict file.",
            show_default=False,
        ),
    ] = None,
    oracle: Annotated[
        int | None,
        typer.Option(
            "--oracle",
            min=1,
            help="Work on the Oracle of stage K instead: an independent, un-pruned network of "
            "D_K's widths and depths (write it with --emit spec).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check SPEC and print its stages: size, parameters, MACs and incremental MACs."""
    _check_flags(emit, output, stage, weights)
    with user_errors():
        from nestdsl.ir import build_ir
        from nestdsl.load import load
        from nestdsl.schedule import expand

        if output is not None and emit is not Emit.onnx_stages:  # a folder: checked by deploy
            check_output(output)
        loaded = load(spec)
        if oracle is not None:
            from nestdsl.oracle import oracle as oracle_of
            from nestdsl.oracle import oracle_cost

            cost = oracle_cost(loaded, oracle)
            loaded = oracle_of(loaded, oracle)
            typer.echo(
                f"oracle of stage {cost.stage} ({cost.label}): {cost.params:,} params, "
                f"{cost.flops:,} MACs; nested D_{cost.stage}: {cost.nested_params:,} params, "
                f"{cost.nested_flops:,} MACs",
                err=True,
            )
        compiled = Compiled(loaded, build_ir(loaded), expand(loaded.schedule))
    if emit in BINARY_OUTPUTS:
        assert output is not None
        last = compiled.ir.num_stages
        chosen = last if stage is None else stage
        if chosen > last:
            raise typer.BadParameter(
                f"{spec} has {last} stage{'s' if last != 1 else ''}; choose 1..{last}",
                param_hint="'--stage'",
            )
        with user_errors():
            import_torch()  # only when exporting
            notice = BINARY_EMITTERS[emit](compiled, output, chosen, weights)
        typer.echo(notice, err=True)
        return
    if emit is Emit.table and output is None and _stdout_console().is_terminal:
        console = _stdout_console()
        console.print(_header(compiled), style="bold")
        console.print(_table(compiled))
        console.print("\n".join(FOOTNOTE), style="dim")
        return
    _write(TEXT_EMITTERS[emit](compiled), output)


def _check_flags(emit: Emit, output: Path | None, stage: int | None, weights: Path | None) -> None:
    """Usage errors (exit 2) for flags the chosen --emit cannot use or lacks."""
    if emit in BINARY_OUTPUTS and output is None:
        kind = "a folder" if emit is Emit.onnx_stages else "a binary file"
        raise typer.BadParameter(
            f"--emit {emit.value} writes {kind}; give -o {BINARY_OUTPUTS[emit]}",
            param_hint="'--output'",
        )
    if stage is not None and emit not in ONE_STAGE:
        raise typer.BadParameter(
            "--stage only applies to --emit export and onnx", param_hint="'--stage'"
        )
    if weights is not None and emit not in BINARY_OUTPUTS:
        raise typer.BadParameter(
            "--weights only applies to --emit export, onnx and onnx-stages",
            param_hint="'--weights'",
        )


def _stdout_console() -> Console:
    """A terminal gets rich's coloured table; pipes and files get the plain recorded text."""
    return Console(highlight=False)


def register(app: typer.Typer) -> None:
    """Add `compile` to the application."""
    app.command("compile", no_args_is_help=True, epilog=EXAMPLES)(compile_command)
