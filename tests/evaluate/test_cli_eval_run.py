"""`nestdsl eval` and `nestdsl run` through Typer's runner, and one real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nestdsl.cli.app import app

runner = CliRunner()
FAST = ["--repeats", "1", "--warmup", "0", "--batch", "2", "--device", "cpu"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_table_and_json(tiny_run) -> None:
    table = invoke("eval", tiny_run, *FAST)
    assert table.exit_code == 0, table.output
    assert "top-1 err" in table.output and "b2 until ms" in table.output
    result = invoke("eval", tiny_run, *FAST, "--json", "--split", "val", "--exits", "1")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["split"] == "val" and len(document["stages"]) == 3
    assert document["cuda_graphs"] is False
    assert set(document["stages"][2]["latency"]) == {"1", "2"}
    (point,) = document["exits"]
    assert point["target_macs"] == 1 and point["exits"][0] == document["examples"]


def test_eval_errors(tiny_run) -> None:
    spec = tiny_run / "spec.nest"
    assert invoke("eval", spec, *FAST).exit_code == 1  # a spec needs --weights (E910)
    missing = invoke("eval", tiny_run, "--split", "nope")
    assert missing.exit_code == 2
    graphs = invoke("eval", tiny_run, *FAST, "--cuda-graphs")
    assert graphs.exit_code == 2
    assert "CUDA graphs need a CUDA device" in graphs.output
    with_weights = invoke(
        "eval", spec, "--weights", tiny_run / "final.pt", "--data", "synthetic:64", *FAST, "--json"
    )
    assert with_weights.exit_code == 0, with_weights.output


def test_run_prints_one_line_per_input(tiny_run, tmp_path) -> None:
    array = tmp_path / "x.npy"
    np.save(array, np.random.default_rng(0).random((3, 8, 8), dtype=np.float32))
    result = invoke("run", tiny_run, "--input", array, "--deadline-ms", "60000")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and all("(stage 3 w4," in line for line in lines)
    budget = invoke("run", tiny_run, "--input", array, "--flops", "1", "--json")
    records = [json.loads(line) for line in budget.output.splitlines()]
    assert [r["stage"] for r in records] == [0, 0, 0]
    assert all(r["prediction"] is None for r in records)
    missed = invoke("run", tiny_run, "--input", array, "--deadline-ms", "0")
    assert missed.output.splitlines()[0] == "x.npy[0]: no stage finished within 0 ms"
    assert invoke("run", tiny_run, "--input", array).exit_code == 2
    graphs = invoke("run", tiny_run, "--input", array, "--deadline-ms", "9", "--cuda-graphs")
    assert graphs.exit_code == 2
    assert "CUDA graphs need a CUDA device" in graphs.output


def test_real_subprocess(tiny_run, tmp_path) -> None:
    local = Path(sys.executable).parent / "nestdsl"
    exe = str(local) if local.exists() else shutil.which("nestdsl")
    if exe is None:
        pytest.skip("the `nestdsl` entry point is not installed")
    array = tmp_path / "x.npy"
    np.save(array, np.zeros((1, 8, 8), dtype=np.float32))
    done = subprocess.run(
        [exe, "run", str(tiny_run), "--input", str(array), "--deadline-ms", "60000"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x.npy[0]: class ")
    bad = subprocess.run(
        [exe, "run", str(tiny_run / "spec.nest"), "--input", str(array), "--flops", "9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "E910" in bad.stderr and "Traceback" not in bad.stderr
