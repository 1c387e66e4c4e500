"""Results of finished runs, aggregated over seeds into Table-1-style markdown.

A run is read from its directory alone (config, results, the spec copy), so the same reader
serves a grid's output root and ``nestdsl plot RUN_DIR...``. Numbers are top-1 *test* error in
percent (the split no choice looks at); a table cell is ``mean (std) ±h`` over seeds, with
``h`` the half-width of the two-sided 95% Student-t interval, as the paper reports mean and
standard deviation over its 3 runs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nestdsl.diagnostics import fail
from nestdsl.experiment.runner import Kind, Variant
from nestdsl.train.runs import CONFIG, FINAL, RESULTS, SPEC_COPY

CONFIDENCE = 0.95
BASELINE_GROWTH = frozenset({"cascade", "even_width"})
"""Schedule steps of the prior designs the paper compares with (EANN, Even-width)."""
HEADERS = {
    "greedy": "Greedy",
    "sgd": "SGD",
    "sgd-sum": "SGD-sum",
    "osgd": "OSGD",
    "sgd-norm": "SGD-Norm",
    "osgd-norm": "OSGD-Norm",
}
"""Column titles of the strategies, as the paper's tables name them."""


@dataclass(frozen=True)
class RunRecord:
    """One finished run: where it is, what it trained, and its per-stage test errors (%).

    ``stage`` is the stage an Oracle or standalone run stands for (None for an anytime run);
    ``errors`` has one entry per output of the trained network, ``labels`` names them.
    """

    path: Path
    spec: str
    variant: str
    kind: Kind
    seed: int
    stage: int | None
    labels: tuple[str, ...]
    errors: tuple[float, ...]
    val_errors: tuple[float, ...]
    flops: tuple[int, ...]
    """MACs of one input through the network of each output (D_k alone; the Oracle's own)."""
    baseline: bool
    """The spec grows like a prior design (EANN's cascade, even widths), not by nesting."""


def read_run(path: Path) -> RunRecord:
    """Read a finished run directory (E935 when it is not one)."""
    from nestdsl.cost import stage_costs
    from nestdsl.ir import build_ir
    from nestdsl.load import load
    from nestdsl.train.runs import read_results

    if not (path / RESULTS).is_file() or not (path / FINAL).is_file():
        fail(
            "E935",
            f"{path} holds no finished run",
            help="give directories `nestdsl train` "
            "or `nestdsl experiment` finished (holding results.json and final.pt)",
        )
    stored = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    config = stored.get("config") or {}
    results = read_results(path)
    stage = config.get("oracle") or config.get("standalone")
    kind: Kind = "oracle" if config.get("oracle") else "standalone" if stage else "anytime"
    order = config.get("priority")
    variant = Variant(kind, config.get("strategy"), stage, tuple(order) if order else None)
    spec = load(path / SPEC_COPY)
    flops = tuple(c.flops for c in stage_costs(build_ir(spec)))
    if results.oracle is not None:
        flops = (results.oracle.flops,)
    return RunRecord(
        path=path,
        spec=Path((stored.get("spec") or {}).get("path") or path.name).stem,
        variant=variant.name,
        kind=kind,
        seed=int(config.get("seed", 0)),
        stage=stage,
        labels=tuple(m.label for m in results.test),
        errors=tuple(100 * m.top1_error for m in results.test),
        val_errors=tuple(100 * m.top1_error for m in results.stages),
        flops=flops[: stage or len(flops)][-len(results.test) :],
        baseline=any(k in BASELINE_GROWTH for step in spec.schedule.steps for k in step.kinds),
    )


def find_runs(paths: Iterable[Path]) -> list[RunRecord]:
    """Every finished run in ``paths`` (run directories or folders holding them), sorted."""
    found: list[RunRecord] = []
    for path in paths:
        if not path.is_dir():
            fail("E935", f"there is no folder {path}")
        runs = [r.parent for r in sorted(path.rglob(RESULTS)) if (r.parent / FINAL).is_file()]
        if not runs:
            fail("E935", f"{path} holds no finished run")
        found += [read_run(run) for run in runs]
    return sorted(found, key=lambda r: (r.spec, r.variant, r.seed))


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation and 95% t half-width of one cell over seeds."""

    mean: float
    std: float
    half_width: float
    count: int

    def __str__(self) -> str:
        if self.count < 2:
            return f"{self.mean:.1f}"
        return f"{self.mean:.1f} ({self.std:.1f}) ±{self.half_width:.1f}"


def summarize(values: Sequence[float]) -> Stat:
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return Stat(mean, math.nan, math.nan, len(values))
    std = statistics.stdev(values)
    t = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1))
    return Stat(mean, std, t * std / math.sqrt(len(values)), len(values))


def stage_errors(runs: Sequence[RunRecord], spec: str, variant: str) -> list[Stat]:
    """Per stage, the test error of one anytime variant over its seeds."""
    chosen = [r.errors for r in runs if r.spec == spec and r.variant == variant]
    return [summarize(column) for column in zip(*chosen, strict=True)]


def single_errors(runs: Sequence[RunRecord], spec: str, kind: str) -> dict[int, Stat]:
    """Stage -> the test error of its Oracle (or standalone D_k) over seeds; its last output."""
    by_stage: dict[int, list[float]] = {}
    for run in runs:
        if run.spec == spec and run.kind == kind and run.stage is not None:
            by_stage.setdefault(run.stage, []).append(run.errors[-1])
    return {stage: summarize(values) for stage, values in sorted(by_stage.items())}


def _title(variant: str) -> str:
    strategy, _, order = variant.partition("-p")
    if order:
        return f"{HEADERS.get(strategy, strategy)} {order.replace('-', ',')}"
    return HEADERS.get(variant, variant)


SINGLE_COLUMNS = {"oracle": "Oracle", "standalone": "D_k alone"}


def spec_table(runs: Sequence[RunRecord], spec: str) -> str:
    """Markdown: one row per stage, one column per anytime variant (then the Oracle and
    standalone columns when those ran), each cell mean (std) ±95% half-width over seeds."""
    anytime = sorted(
        {r.variant for r in runs if r.spec == spec and r.kind == "anytime"}, key=_column_order
    )
    if not anytime:
        return ""
    labels = next(r.labels for r in runs if r.spec == spec and r.kind == "anytime")
    columns = {v: stage_errors(runs, spec, v) for v in anytime}
    singles = {k: single_errors(runs, spec, k) for k in SINGLE_COLUMNS}
    singles = {k: v for k, v in singles.items() if v}
    seeds = sorted({r.seed for r in runs if r.spec == spec})
    head = [_title(v) for v in anytime] + [SINGLE_COLUMNS[k] for k in singles]
    lines = [
        f"**{spec}** (seeds {', '.join(map(str, seeds))})",
        "",
        "| stage | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    for index, label in enumerate(labels):
        cells = [_cell(columns[v][index], len(seeds)) for v in anytime]
        cells += [
            _cell(s[index + 1], len(seeds)) if index + 1 in s else "" for s in singles.values()
        ]
        lines.append(f"| {index + 1} {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(stat: Stat, seeds: int) -> str:
    """A table cell; one over fewer seeds than its table says so (a grid stopped early)."""
    return str(stat) if stat.count == seeds else f"{stat} [n={stat.count}]"


def _column_order(variant: str) -> tuple[bool, int, str]:
    """Strategies in the paper's column order, then the extra priority orders."""
    strategy, _, order = variant.partition("-p")
    known = list(HEADERS)
    return (bool(order), known.index(strategy) if strategy in known else len(known), variant)


def results_markdown(runs: Sequence[RunRecord]) -> str:
    """Every spec's table, in name order, under one explanation of the numbers."""
    specs = sorted({r.spec for r in runs})
    tables = [t for t in (spec_table(runs, s) for s in specs) if t]
    intro = (
        "Top-1 test error (%) per stage: mean (standard deviation) ±half-width of the 95% "
        "Student-t interval over seeds. Oracle: an independent network of the stage's size; "
        "D_k alone: the stage's subnetwork trained by itself. [n=k]: a cell over only k of the "
        "table's seeds (a grid not yet finished)."
    )
    return "\n\n".join([intro, *tables]) + "\n"
