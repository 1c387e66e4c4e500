"""`nestdsl experiment GRID.toml`: train the grid, then write its report next to the runs."""

from __future__ import annotations

from pathlib import Path

from nestdsl.diagnostics import fail
from nestdsl.experiment.grid import load_grid
from nestdsl.experiment.report import write_report
from nestdsl.experiment.runner import Report, Summary, run_grid
from nestdsl.experiment.tables import find_runs
from nestdsl.train.runs import RESULTS


def run_experiment(
    grid_file: str | Path,
    out: str | Path | None = None,
    *,
    jobs: int = 1,
    report: Report = print,
    train: bool = True,
) -> Summary:
    """Train every unfinished cell of the grid under ``out`` (default ``runs/<grid name>``)
    and write ``OUT/results.md`` with its figures; failed cells are reported (E934) last.
    ``train=False`` only writes the report of the runs finished so far."""
    grid = load_grid(grid_file)
    root = Path(out) if out is not None else Path("runs") / grid.grid.name
    summary = run_grid(grid, root, jobs=jobs, report=report) if train else Summary(0, 0, [])
    if any(root.rglob(RESULTS)):
        path = write_report(grid, find_runs([root]), root)
        report(f"report: {path}")
    if summary.failed:
        fail(
            "E934",
            f"{len(summary.failed)} run(s) failed: {', '.join(summary.failed)}",
            help="their errors are printed above; fix them and run the grid again",
        )
    return summary
