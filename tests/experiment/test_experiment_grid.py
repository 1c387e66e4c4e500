"""GRID.toml reading: a valid grid, and each kind of mistake reported at its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestdsl.diagnostics import NestError
from nestdsl.experiment.grid import PAPER_STRATEGIES, key_lines, load_grid

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "digits_width.nest"

VALID = f"""\
[grid]
name = "tiny"
seeds = [0, 1]

[train]
data = "synthetic:64"
epochs = 1

[[specs]]
path = "{SPEC}"
strategies = ["sgd", "osgd"]
oracle = true
priorities = [[2, 1, 3]]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def errors(path: Path) -> list[tuple[str, int | None, str]]:
    with pytest.raises(NestError) as caught:
        load_grid(path)
    return [(d.code, d.span.line if d.span else None, d.message) for d in caught.value.diagnostics]


def test_valid_grid(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, VALID))
    entry = grid.specs[0]
    assert grid.grid.seeds == [0, 1]
    assert grid.strategies(entry) == ["sgd", "osgd"]
    assert grid.spec_path(entry) == SPEC
    assert entry.priorities == [[2, 1, 3]]
    assert grid.train == {"data": "synthetic:64", "epochs": 1}


def test_default_strategies_are_the_papers_five(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, VALID.replace('strategies = ["sgd", "osgd"]\n', "")))
    assert grid.strategies(grid.specs[0]) == list(PAPER_STRATEGIES)


def test_spec_paths_are_relative_to_the_grid(tmp_path: Path) -> None:
    (tmp_path / "net.nest").write_text(SPEC.read_text())
    grid = load_grid(write(tmp_path, VALID.replace(str(SPEC), "net.nest")))
    assert grid.spec_path(grid.specs[0]) == (tmp_path / "net.nest").resolve()


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("oracle = true", "oracel = true"))
    assert errors(path) == [("E931", 12, "`specs.0.oracel`: Extra inputs are not permitted")]


def test_missing_table(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.split("[train]")[0])
    assert errors(path) == [("E931", 1, "`specs`: Field required")]


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('name = "tiny"', "name = tiny"))
    [(code, line, message)] = errors(path)
    assert (code, line) == ("E930", 2)
    assert "not valid TOML" in message


def test_unreadable_file(tmp_path: Path) -> None:
    [(code, line, _)] = errors(tmp_path / "absent.toml")
    assert (code, line) == ("E930", None)


def test_bad_training_option_and_cell_field(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("epochs = 1", "epochs = 0\nseed = 3"))
    assert errors(path) == [
        ("E932", 8, "`train.seed` is set per cell by the grid"),
        ("E932", 7, "`train.epochs`: Input should be greater than 0"),
    ]


def test_unknown_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('"osgd"]', '"osdg"]'))
    assert errors(path) == [("E932", 11, "unknown strategy `osdg`")]


def test_missing_spec(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace(str(SPEC), "nowhere.nest"))
    [(code, line, message)] = errors(path)
    assert (code, line) == ("E933", 10)
    assert "no spec at" in message


def test_priority_order_must_fit_the_stages(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("[[2, 1, 3]]", "[[2, 1]]"))
    assert errors(path) == [
        ("E933", 13, "priority order [2, 1] has 2 stages; `" + str(SPEC) + "` has 3")
    ]


def test_priority_must_be_a_permutation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("[[2, 1, 3]]", "[[2, 2, 3]]"))
    [(code, line, message)] = errors(path)
    assert (code, line) == ("E931", 13)
    assert "not an order of the stages" in message


def test_key_lines_count_array_tables() -> None:
    text = "[grid]\nname = 'x'\n[[specs]]\npath = 'a'\n[[specs]]\npath = 'b'\n"
    lines = key_lines(text)
    assert lines[("specs", 0, "path")] == 4
    assert lines[("specs", 1, "path")] == 6
    assert lines[("grid", "name")] == 2


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_shipped_grids_parse(name: str) -> None:
    """The committed grids load (specs, options, priority orders); the CIFAR one is not run."""
    from nestdsl.experiment.runner import cells

    grid = load_grid(ROOT / "experiments" / f"{name}.toml")
    assert grid.grid.seeds == [0, 1, 2]
    names = {grid.spec_path(e).stem for e in grid.specs}
    assert {e.baseline for e in grid.specs} - {None} <= names
    assert len(cells(grid)) > 3 * len(grid.specs)


def test_cifar10_grid_is_the_papers_setting() -> None:
    grid = load_grid(ROOT / "experiments" / "cifar10.toml")
    assert grid.train["epochs"] == 200
    assert grid.train["lr"] == 0.1
    assert grid.train["schedule"] == "exp"
    assert grid.train["data"].startswith("cifar10:")
    assert len(grid.specs) == 6


def test_baseline_must_be_a_spec_of_the_grid(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + 'baseline = "digits_eann"\n')
    assert errors(path) == [("E933", 14, "baseline `digits_eann` is not a spec of this grid")]
