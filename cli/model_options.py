"""The options `eval` and `run` share: which trained network (a run directory, or a spec with
--weights), the data it was trained on, and the device."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import torch

    from nestdsl.trained import Model

TargetArgument = Annotated[
    Path,
    typer.Argument(
        exists=True,
        metavar="RUN_DIR|SPEC",
        help="A finished `nestdsl train` run directory, or a `.nest` spec with --weights.",
        show_default=False,
    ),
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        exists=True,
        metavar="FILE",
        help="Trained weights (a state-dict file or a run directory) for the SPEC argument.",
        show_default=False,
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="SOURCE",
        help="Data source (default: the run's own; `digits` for a spec), as for `train`.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option("--device", help="auto (CUDA when present) | cpu | cuda | cuda:N."),
]


CudaGraphsOption = Annotated[
    bool,
    typer.Option(
        "--cuda-graphs",
        help="Replay each stage from a CUDA graph captured once (needs a CUDA device): "
        "one launch per stage instead of one per kernel.",
    ),
]


def check_cuda_graphs(cuda_graphs: bool, device: str, chosen: torch.device) -> None:
    """--cuda-graphs without a CUDA device is a usage error (exit 2)."""
    if cuda_graphs and chosen.type != "cuda":
        raise typer.BadParameter(
            f"CUDA graphs need a CUDA device, and --device {device} gives {chosen}: "
            "add --device cuda, or leave out --cuda-graphs",
            param_hint="'--cuda-graphs'",
        )


def open_model(target: Path, weights: Path | None, data: str | None) -> Model:
    """Load the network the arguments name (errors are NestErrors, for `user_errors`)."""
    from nestdsl.trained import load_model

    return load_model(target, weights=weights, data=data)


def device_named(name: str) -> torch.device:
    """The torch device for --device (T001/T006 when it is unknown or absent)."""
    from nestdsl.train.devices import resolve_device

    return resolve_device(name)
