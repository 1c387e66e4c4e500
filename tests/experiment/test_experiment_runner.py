"""`nestdsl experiment`: the grid's cells, skip / resume / clear, CLI and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.diagnostics import NestError
from nestdsl.experiment.grid import load_grid
from nestdsl.experiment.runner import Variant, cells, run_grid, state_of
from nestdsl.train.runs import CONFIG, METRICS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_toy import write_tiny_spec

pytestmark = pytest.mark.usefixtures("single_thread")

GRID = """\
[grid]
name = "tiny"
seeds = [0]
strategies = ["sgd"]

[train]
data = "synthetic:64"
epochs = EPOCHS
batch_size = 32
device = "cpu"

[[specs]]
path = "tiny.nest"
oracle = ORACLE
"""


def grid_file(tmp_path: Path, *, epochs: int = 1, oracle: bool = False) -> Path:
    write_tiny_spec(tmp_path)
    path = tmp_path / "grid.toml"
    text = GRID.replace("EPOCHS", str(epochs)).replace("ORACLE", str(oracle).lower())
    path.write_text(text)
    return path


def test_variant_names_and_options() -> None:
    assert Variant("anytime", strategy="osgd").name == "osgd"
    assert Variant("anytime", strategy="osgd", priority=(2, 1, 3)).name == "osgd-p2-1-3"
    assert Variant("anytime", "osgd", priority=(2, 1, 3)).options() == {
        "strategy": "osgd",
        "priority": [2, 1, 3],
    }
    assert Variant("oracle", stage=2).name == "oracle2"
    assert Variant("standalone", stage=1).options() == {"standalone": 1}


def test_cells_cover_the_grid_seeds_outermost(tmp_path: Path) -> None:
    path = grid_file(tmp_path, oracle=True)
    path.write_text(path.read_text().replace("seeds = [0]", "seeds = [0, 1]"))
    found = cells(load_grid(path))
    names = [(c.seed, c.variant.name) for c in found]
    assert names == [(s, v) for s in (0, 1) for v in ("sgd", "oracle1", "oracle2", "oracle3")]
    assert found[1].config.oracle == 1
    assert found[4].config.seed == 1


def test_experiment_cli_trains_then_skips(tmp_path: Path) -> None:
    path = grid_file(tmp_path, oracle=True)
    path.write_text(
        path.read_text().replace('["sgd"]', '["sgd", "osgd"]') + "priorities = [[3, 2, 1]]\n"
    )
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["experiment", str(path), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "6 runs: 0 finished, 6 to train" in first.output
    assert "tiny/osgd-p3-2-1/seed0 done" in first.output
    table = (out / "results.md").read_text()
    assert "| stage | SGD | OSGD | OSGD 3,2,1 | Oracle |" in table
    assert (out / "tiny" / "sgd" / "seed0" / "final.pt").is_file()
    second = runner.invoke(app, ["experiment", str(path), "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert "6 runs: 6 finished, 0 to train" in second.output
    (out / "results.md").unlink()
    third = runner.invoke(app, ["experiment", str(path), "--out", str(out), "--report-only"])
    assert third.exit_code == 0, third.output
    assert "runs:" not in third.output
    assert "| stage | SGD | OSGD | OSGD 3,2,1 | Oracle |" in (out / "results.md").read_text()


def test_interrupted_run_is_resumed(tmp_path: Path) -> None:
    from nestdsl.train.engine import train

    grid = load_grid(grid_file(tmp_path, epochs=2))
    [cell] = cells(grid)
    run_dir = cell.run_dir(tmp_path / "out")
    train(cell.spec, cell.config, run_dir, progress=False, until_epoch=1)
    assert state_of(cell, run_dir) == "resume"
    lines: list[str] = []
    summary = run_grid(grid, tmp_path / "out", report=lines.append)
    assert (summary.skipped, summary.trained, summary.failed) == (0, 1, [])
    epochs = [json.loads(line)["epoch"] for line in (run_dir / METRICS).read_text().splitlines()]
    assert epochs == [1, 2]
    assert state_of(cell, run_dir) == "finished"


def test_start_that_died_before_a_checkpoint_is_cleared(tmp_path: Path) -> None:
    [cell] = cells(load_grid(grid_file(tmp_path)))
    run_dir = cell.run_dir(tmp_path / "out")
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG).write_text("{}")
    assert state_of(cell, run_dir) == "new"
    assert not run_dir.exists()


def test_run_with_other_settings_is_refused(tmp_path: Path) -> None:
    path = grid_file(tmp_path)
    out = tmp_path / "out"
    run_grid(load_grid(path), out, report=lambda line: None)
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 2"))
    with pytest.raises(NestError) as caught:
        run_grid(load_grid(path), out, report=lambda line: None)
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.code == "E934"
    assert "other settings (epochs)" in diagnostic.message


def test_option_the_run_ignores_does_not_refuse_it(tmp_path: Path) -> None:
    path = grid_file(tmp_path)
    out = tmp_path / "out"
    run_grid(load_grid(path), out, report=lambda line: None)
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 1\nnorm_constant = 0.01"))
    summary = run_grid(load_grid(path), out, report=lambda line: None)
    assert (summary.skipped, summary.trained) == (1, 0)


def test_failed_cell_is_reported_after_the_others(tmp_path: Path) -> None:
    path = grid_file(tmp_path)
    path.write_text(path.read_text().replace('"synthetic:64"', '"cifar10:/nowhere"'))
    result = CliRunner().invoke(app, ["experiment", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "tiny/sgd/seed0 failed" in result.output
    assert "error[E934]: 1 run(s) failed: tiny/sgd/seed0" in result.output


def test_bad_grid_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\nname = 'x'\nseeds = []\n")
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 1
    assert "error[E931]" in result.output
    assert "grid.toml:3" in result.output


@pytest.mark.slow
def test_subprocess_with_two_worker_processes(tmp_path: Path) -> None:
    path = grid_file(tmp_path)
    path.write_text(path.read_text().replace('["sgd"]', '["sgd", "osgd"]'))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nestdsl.cli",
            "experiment",
            str(path),
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2 runs: 0 finished, 2 to train (2 at a time)" in done.stdout
    assert (tmp_path / "out" / "tiny" / "osgd" / "seed0" / "results.json").is_file()
