"""`nestdsl plot` and the experiment report on a tiny trained grid (synthetic data, 1 epoch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.experiment.grid import load_grid
from nestdsl.experiment.plots import flops_curves
from nestdsl.experiment.report import write_report
from nestdsl.experiment.runner import run_grid
from nestdsl.experiment.tables import find_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_toy import write_tiny_spec

GRID = """\
[grid]
name = "tiny"
seeds = [0]
strategies = ["sgd", "osgd"]

[train]
data = "synthetic:64"
epochs = 1
batch_size = 32
device = "cpu"

[[specs]]
path = "tiny.nest"
oracle = true
priorities = [[3, 2, 1]]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid of 6 tiny runs, trained once for the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("grid")
    write_tiny_spec(folder)
    (folder / "grid.toml").write_text(GRID)
    run_grid(load_grid(folder / "grid.toml"), folder / "out", report=lambda line: None)
    torch.set_num_threads(before)
    return folder


def test_flops_curves_pair_each_stage_with_its_macs(trained: Path) -> None:
    runs = find_runs([trained / "out"])
    nested, oracle = flops_curves(runs)
    assert (nested.role, oracle.role) == ("nested", "oracle")
    assert len(nested.flops) == len(oracle.flops) == 3
    assert list(nested.flops) == sorted(nested.flops)
    assert all(0 <= s.mean <= 100 for s in nested.errors)


def test_report_writes_tables_and_figures(trained: Path) -> None:
    grid = load_grid(trained / "grid.toml")
    path = write_report(grid, find_runs([trained / "out"]), trained / "out")
    text = path.read_text()
    assert "| stage | SGD | OSGD | OSGD 3,2,1 | Oracle |" in text
    assert "| deadline | Nested | Oracle_All | Oracle_Each |" in text
    for figure in ("flops-tiny.svg", "priorities-tiny.svg", "deadline-tiny.svg"):
        assert f"]({figure})" in text
        assert (trained / "out" / figure).read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "wrote"),
        (["--kind", "priorities", "--spec", "tiny"], "wrote"),
        (["--kind", "deadline", "--spec", "tiny"], "| none |"),
    ],
)
def test_plot_command(trained: Path, tmp_path: Path, options: list[str], expected: str) -> None:
    out = tmp_path / "figure.png"
    result = CliRunner().invoke(app, ["plot", str(trained / "out"), "-o", str(out), *options])
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (["-o", "figure.pdf"], "E936"),
        (["-o", "figure.svg", "--kind", "bars"], "E936"),
        (["-o", "figure.svg", "--kind", "deadline"], "E937"),
        (["-o", "figure.svg", "--kind", "deadline", "--spec", "tiny", "--baseline", "x"], "E937"),
    ],
)
def test_plot_errors(trained: Path, tmp_path: Path, options: list[str], code: str) -> None:
    options = [str(tmp_path / o) if o.startswith("figure") else o for o in options]
    result = CliRunner().invoke(app, ["plot", str(trained / "out"), *options])
    assert result.exit_code == 1
    assert f"error[{code}]" in result.output


def test_plot_of_a_folder_without_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "-o", str(tmp_path / "f.svg")])
    assert result.exit_code == 1
    assert "error[E935]" in result.output
