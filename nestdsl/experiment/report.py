"""The report of a grid: its tables, and the figures and simulations its runs allow.

Everything here is optional per spec, because a grid may be partly trained: Figure 9's curves
need a spec's OSGD runs, Figure 8's its priority orders, the deadline simulation its OSGD runs,
its Oracles and (when named) its baseline's OSGD runs. What the runs do not allow is left out
of ``results.md`` rather than failing the whole report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nestdsl.diagnostics import fail
from nestdsl.experiment.deadline import deadline_groups, deadline_table, plot_deadlines, simulate
from nestdsl.experiment.grid import Grid
from nestdsl.experiment.plots import flops_curves, plot_flops, plot_priorities
from nestdsl.experiment.tables import RunRecord, results_markdown
from nestdsl.files import write_text

REPORT = "results.md"
STRATEGY = "osgd"
"""The strategy the figures show for anytime networks (the paper's choice for Figure 9)."""


def write_report(grid: Grid, runs: Sequence[RunRecord], out: Path) -> Path:
    """Write ``out/results.md`` and the figures it links; return the report's path."""
    parts = [f"# {grid.grid.name}: results", "", results_markdown(runs)]
    for entry in grid.specs:
        name = grid.spec_path(entry).stem
        parts += _flops(runs, name, entry.baseline, out)
        if entry.priorities:
            parts += _priorities(runs, name, out)
        if entry.oracle:
            parts += _deadlines(runs, name, entry.baseline, out)
    write_text(out / REPORT, "\n".join(parts) + "\n")
    return out / REPORT


def _flops(runs: Sequence[RunRecord], spec: str, baseline: str | None, out: Path) -> list[str]:
    shown = [r for r in runs if r.spec in (spec, baseline)]
    curves = flops_curves(shown, STRATEGY)
    if not any(c.role == "nested" for c in curves):
        return []
    plot_flops(curves, out / f"flops-{spec}.svg", title=f"{spec}: error against MACs")
    return ["", f"![error against MACs, {spec}](flops-{spec}.svg)"]


def _priorities(runs: Sequence[RunRecord], spec: str, out: Path) -> list[str]:
    if not any(r.spec == spec and "-p" in r.variant for r in runs):
        return []
    plot_priorities(runs, spec, out / f"priorities-{spec}.svg")
    return ["", f"![OSGD priority orders, {spec}](priorities-{spec}.svg)"]


def _deadlines(runs: Sequence[RunRecord], spec: str, baseline: str | None, out: Path) -> list[str]:
    groups = deadline_groups(runs, spec, baseline, STRATEGY)
    if not groups:
        return []
    simulation = simulate(groups)
    title = f"{spec}" + (f" vs {baseline}" if baseline else "") + ": error under deadlines"
    plot_deadlines(simulation, out / f"deadline-{spec}.svg", title)
    return [
        "",
        f"**Deadlines, {spec}** ({STRATEGY}; {len(groups)} seeds; error %, mean (std))",
        "",
        deadline_table(simulation),
        "",
        f"![{title}](deadline-{spec}.svg)",
    ]


def plot_runs(
    paths: Sequence[Path],
    out: Path,
    *,
    kind: str = "flops",
    spec: str | None = None,
    baseline: str | None = None,
    strategy: str = STRATEGY,
) -> str:
    """`nestdsl plot`: one figure of the finished runs under ``paths``; returns a line to
    print (the deadline simulation returns its table)."""
    from nestdsl.experiment.plots import check_output
    from nestdsl.experiment.tables import find_runs

    check_output(out)
    if kind not in PLOTS:
        fail("E936", f"unknown plot kind `{kind}`", help="choose " + ", ".join(PLOTS))
    runs = find_runs(paths)
    if kind != "flops" and (spec is None or not any(r.spec == spec for r in runs)):
        known = ", ".join(sorted({r.spec for r in runs}))
        fail("E937", f"the `{kind}` plot needs --spec, one of the runs' specs", help=known)
    return PLOTS[kind](runs, out, spec or "", baseline, strategy)


def _plot_flops(
    runs: Sequence[RunRecord], out: Path, spec: str, baseline: str | None, strategy: str
) -> str:
    plot_flops(flops_curves(runs, strategy), out)
    return f"wrote {out}"


def _plot_priorities(
    runs: Sequence[RunRecord], out: Path, spec: str, baseline: str | None, strategy: str
) -> str:
    plot_priorities(runs, spec, out)
    return f"wrote {out}"


def _plot_deadlines(
    runs: Sequence[RunRecord], out: Path, spec: str, baseline: str | None, strategy: str
) -> str:
    groups = deadline_groups(runs, spec, baseline, strategy)
    if not groups:
        fail(
            "E937",
            f"no seed has the {strategy} run of `{spec}`"
            + (f" and of `{baseline}`" if baseline else "")
            + " and every Oracle of it",
            help="train them first (a grid entry with `oracle = true`)",
        )
    simulation = simulate(groups)
    plot_deadlines(simulation, out, f"{spec}: error under deadlines")
    return deadline_table(simulation) + f"\nwrote {out}"


PLOTS = {"flops": _plot_flops, "priorities": _plot_priorities, "deadline": _plot_deadlines}
"""`nestdsl plot --kind`: Figure 9's curves, Figure 8's orders, Figure 10's bars."""
