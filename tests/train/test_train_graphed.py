"""``--cuda-graphs``: what can be checked without a GPU (the replays themselves are tested in
tests/test_cuda.py): the refusals, the banner, and that a run without it steps eagerly."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.diagnostics import NestError
from nestdsl.train.batch_step import train_step
from nestdsl.train.config import RUNTIME_FIELDS, make_config
from nestdsl.train.devices import Runtime
from nestdsl.train.graphed import check_graphable, graphs_text, stepper

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "specs" / "digits_width.nest")


@pytest.mark.parametrize(
    ("options", "device", "processes", "message"),
    [
        ({}, "cpu", 1, "records GPU kernels, and this run trains on cpu"),
        ({}, "cuda", 2, "trains in one process, and this run has 2"),
        ({"torch_compile": True}, "cuda", 1, "--cuda-graphs and --torch-compile"),
    ],
)
def test_what_cannot_be_graphed_is_refused_before_the_run(
    options: dict[str, bool], device: str, processes: int, message: str
) -> None:
    config = make_config(cuda_graphs=True, **options)
    with pytest.raises(NestError, match=f"T020.*{message}"):
        check_graphable(config, torch.device(device), processes)
    check_graphable(make_config(**options), torch.device(device), processes)  # off: no check


def test_a_cpu_run_with_cuda_graphs_is_a_clear_error() -> None:
    for extra in (["--dry-run"], ["--epochs", "1", "-q"]):
        result = CliRunner().invoke(
            app, ["train", SPEC, "--cuda-graphs", "--device", "cpu", *extra]
        )
        assert result.exit_code == 1, result.output
        assert "error[T020]" in result.output and "Traceback" not in result.output


def test_the_banner_says_what_is_replayed() -> None:
    assert graphs_text(make_config()) is None
    assert "replayed from a CUDA graph" in (graphs_text(make_config(cuda_graphs=True)) or "")
    assert "cuda_graphs" in RUNTIME_FIELDS  # a resumed run may switch it: it learns the same


def test_without_cuda_graphs_the_steps_are_eager() -> None:
    plan, runtime = object(), Runtime(torch.device("cpu"), None, channels_last=False)
    steps = stepper(plan, runtime, False)  # type: ignore[arg-type]
    assert isinstance(steps, partial) and steps.func is train_step
    assert steps.args == (plan, runtime)
    with pytest.raises(ValueError, match="need a CUDA device, and the run is on cpu"):
        stepper(plan, runtime, True)  # type: ignore[arg-type]
