"""`nestdsl eval RUN_DIR`: per-stage error, size, counted MACs and measured latency of a
trained anytime network, as a table or (``--json``) the document docs/evaluation.md describes.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from nestdsl.cli.common import import_torch, user_errors
from nestdsl.cli.model_options import (
    CudaGraphsOption,
    DataOption,
    DeviceOption,
    TargetArgument,
    WeightsOption,
    check_cuda_graphs,
    device_named,
    open_model,
)
from nestdsl.glossary import human

if TYPE_CHECKING:
    from nestdsl.evaluate.exits import ExitPoint
    from nestdsl.evaluate.latency import Latency
    from nestdsl.evaluate.report import EvalReport

EXAMPLES = """\b
Examples:
  nestdsl eval runs/dw
  nestdsl eval runs/dw --batch 64 --split val --json
  nestdsl eval specs/digits_width.nest --weights dw.pt
  nestdsl eval runs/dw --exits 300000 --exits 1000000
"""


class Split(str, Enum):
    """Which part of the run's data to score."""

    test = "test"
    val = "val"
    train = "train"


def _ms(latency: Latency) -> str:
    return f"{latency.median_ms:.3g} ({latency.p90_ms:.3g})"


def _table(report: EvalReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("stage", "size", "top-1 err", "top-5 err", "params", "MACs", "incr. MACs"):
        table.add_column(name, justify="left" if name == "size" else "right")
    batches = [timing.batch for timing in report.stages[0].timings]
    for batch in batches:
        for name in ("incr.", "until", "alone"):
            table.add_column(f"b{batch} {name} ms", justify="right")
    for stage in report.stages:
        m = stage.metrics
        cells = [
            str(m.stage),
            m.label,
            f"{m.top1_error:.2%}",
            f"{m.top5_error:.2%}",
            human(stage.params),
            human(stage.macs),
            human(stage.incremental_macs),
        ]
        for t in stage.timings:
            cells += [_ms(t.incremental), _ms(t.until), _ms(t.standalone)]
        table.add_row(*cells)
    return table


def _exit_table(points: list[ExitPoint]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="confidence exits (calibrated on val)")
    for name in ("target MACs", "mean MACs", "top-1 err", "exits per stage", "ms", "all ms"):
        table.add_column(name, justify="right")
    for p in points:
        table.add_row(
            human(p.target),
            human(round(p.mean_macs)),
            f"{p.top1_error:.2%}",
            " ".join(str(n) for n in p.exits),
            f"{p.exit_ms.median_ms:.3g}",
            f"{p.all_ms.median_ms:.3g}",
        )
    return table


def _print(report: EvalReport, points: list[ExitPoint]) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    console.print(
        f"{report.network} ({report.source}): {report.split} split, {report.examples} "
        f"examples, device {report.device}, {report.repeats} repeats"
        f"{', replayed from CUDA graphs' if report.cuda_graphs else ''}",
        style="bold",
    )
    console.print(_table(report))
    console.print(
        "latency per batch in ms, median (p90): incr. = stage k after stages 1..k-1, "
        "until = input to stage k's answer, alone = D_k as a standalone network; "
        "MACs = D_k alone, incr. MACs counted with torch.utils.flop_counter",
        style="dim",
    )
    if points:
        console.print(_exit_table(points))


def eval_command(
    target: TargetArgument,
    weights: WeightsOption = None,
    data: DataOption = None,
    split: Annotated[
        Split, typer.Option("--split", help="Which split to score.", case_sensitive=False)
    ] = Split.test,
    batch: Annotated[
        int, typer.Option("--batch", "-b", min=1, help="Batch size to time besides 1.")
    ] = 32,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per latency.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 3,
    device: DeviceOption = "auto",
    cuda_graphs: CudaGraphsOption = False,
    exits: Annotated[
        list[int] | None,
        typer.Option(
            "--exits",
            min=1,
            metavar="MACS",
            help="Confidence exits: calibrate thresholds on the validation split for this "
            "mean MACs per example and score them on --split (repeatable).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Evaluate a trained anytime network stage by stage: error, size, MACs and latency."""
    with user_errors():
        import_torch()
        from nestdsl.evaluate.exits import exit_curve
        from nestdsl.evaluate.report import EvalOptions, as_nested, evaluate_run

        chosen = device_named(device)
        check_cuda_graphs(cuda_graphs, device, chosen)
        model = open_model(target, weights, data)
        net = as_nested(model.net)
        datasets = model.datasets()
        scored = {Split.test: datasets.test, Split.val: datasets.val, Split.train: datasets.train}
        options = EvalOptions(
            batches=(1, batch),
            repeats=repeats,
            warmup=warmup,
            device=chosen,
            cuda_graphs=cuda_graphs,
        )
        report = evaluate_run(
            net,
            scored[split],
            split=split.value,
            source=model.source,
            options=options,
        )
        points = exit_curve(net, datasets.val, scored[split], exits, options) if exits else []
    if as_json:
        document = report.as_json()
        if points:
            document["exits"] = [point.as_json() for point in points]
        typer.echo(json.dumps(document, indent=2))
        return
    _print(report, points)


def register(app: typer.Typer) -> None:
    """Add `eval` to the application."""
    app.command("eval", no_args_is_help=True, epilog=EXAMPLES)(eval_command)
