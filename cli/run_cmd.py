"""`nestdsl run RUN_DIR --input PATH --deadline-ms X | --flops N`: the anytime runtime on
files, one line per input: the prediction, the stage that gave it, and when it was ready."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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

if TYPE_CHECKING:
    from nestdsl.evaluate.runtime import AnytimeResult, Budget

EXAMPLES = """\b
Examples:
  nestdsl run runs/dw --input digits.npy --deadline-ms 2
  nestdsl run runs/dw --input photos/ --flops 1000000
  nestdsl run specs/digits_width.nest --weights dw.pt --input seven.png --deadline-ms 5
"""


def _line(name: str, result: AnytimeResult, budget: Budget) -> str:
    if result.prediction is None:
        limits = []
        if budget.seconds is not None:
            limits.append(f"{budget.seconds * 1000:g} ms")
        if budget.macs is not None:
            limits.append(f"{budget.macs:,} FLOPs")
        return f"{name}: no stage finished within {' and '.join(limits)}"
    return (
        f"{name}: class {int(result.prediction[0])} "
        f"(stage {result.stage} {result.label}, {result.elapsed_s * 1000:.3f} ms)"
    )


def _record(name: str, result: AnytimeResult) -> dict[str, object]:
    prediction = None if result.prediction is None else int(result.prediction[0])
    return {
        "input": name,
        "prediction": prediction,
        "stage": result.stage,
        "label": result.label,
        "elapsed_ms": result.elapsed_s * 1000,
    }


def run_command(
    target: TargetArgument,
    inputs: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            metavar="PATH",
            help="An image, a folder of images, or a .npy array ([H,W], [N,H,W], [N,C,H,W]).",
            show_default=False,
        ),
    ],
    deadline_ms: Annotated[
        float | None,
        typer.Option(
            "--deadline-ms",
            min=0,
            help="Answer with the last stage that finished within this many ms per input.",
            show_default=False,
        ),
    ] = None,
    flops: Annotated[
        int | None,
        typer.Option(
            "--flops",
            min=0,
            help="Run only the stages whose cumulative FLOPs (multiply-accumulates, as "
            "`compile` counts them) per input fit in N.",
            show_default=False,
        ),
    ] = None,
    weights: WeightsOption = None,
    data: DataOption = None,
    device: DeviceOption = "cpu",
    cuda_graphs: CudaGraphsOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Serve a trained anytime network under a deadline or a FLOP budget, input by input."""
    if deadline_ms is None and flops is None:
        raise typer.BadParameter(
            "give --deadline-ms X, --flops N, or both", param_hint="'--deadline-ms'"
        )
    with user_errors():
        import_torch()
        from nestdsl.evaluate.inputs import Preprocessing, read_inputs
        from nestdsl.evaluate.report import as_nested
        from nestdsl.evaluate.runtime import Budget, serve

        model = open_model(target, weights, data)
        net = as_nested(model.net)
        split = model.datasets()
        images = read_inputs(inputs, Preprocessing(net.input_shape, split.mean, split.std))
        chosen = device_named(device)
        check_cuda_graphs(cuda_graphs, device, chosen)
        seconds = None if deadline_ms is None else deadline_ms / 1000
        budget = Budget(seconds=seconds, macs=flops)
        results = serve(net.to(chosen), images.images.to(chosen), budget, cuda_graphs=cuda_graphs)
    for name, result in zip(images.names, results, strict=True):
        typer.echo(json.dumps(_record(name, result)) if as_json else _line(name, result, budget))


def register(app: typer.Typer) -> None:
    """Add `run` to the application."""
    app.command("run", no_args_is_help=True, epilog=EXAMPLES)(run_command)
