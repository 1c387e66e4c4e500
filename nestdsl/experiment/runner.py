"""Run a grid: one ``nestdsl train`` run directory per cell, skipped when done, resumed when cut.

A *cell* is (spec, variant, seed); a *variant* is the anytime network under one strategy (and
optionally one OSGD priority order), the Oracle of one stage, or one stage D_k trained alone.
Cell ``c`` lives in ``OUT/<spec>/<variant>/seed<N>``, so the layout is the grid and a second
call finds the finished cells by their ``results.json`` alone. Seeds are the outermost loop:
a grid stopped early still has every variant of the first seeds.

Runs go to ``jobs`` worker processes; each sets its torch threads to
``thread_budget(jobs, workers)``, because two runs each spinning two OpenMP threads on two
cores are many times slower than two runs of one thread. While they train, the parent reads
the runs' ``metrics.jsonl`` and reports each new epoch (which run, which epoch of how many).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

from nestdsl.diagnostics import NestError, fail
from nestdsl.experiment.grid import Grid, SpecEntry
from nestdsl.train.config import OPTION_APPLIES, RUNTIME_FIELDS, TrainConfig, make_config
from nestdsl.train.runs import CHECKPOINT, CONFIG, FINAL, METRICS, RESULTS

Kind = Literal["anytime", "oracle", "standalone"]
Report = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """What one column of a results table trains (besides the seed)."""

    kind: Kind
    strategy: str | None = None
    stage: int | None = None
    priority: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        """The folder name: ``osgd``, ``osgd-p2-1-3``, ``oracle2``, ``standalone2``."""
        if self.kind != "anytime":
            return f"{self.kind}{self.stage}"
        order = "-p" + "-".join(map(str, self.priority)) if self.priority else ""
        return f"{self.strategy}{order}"

    def options(self) -> dict[str, object]:
        """The TrainConfig fields this variant sets."""
        if self.kind == "anytime":
            order = {"priority": list(self.priority)} if self.priority else {}
            return {"strategy": self.strategy, **order}
        return {self.kind: self.stage}


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    spec: Path
    variant: Variant
    seed: int
    config: TrainConfig

    def run_dir(self, out: Path) -> Path:
        return out / self.spec.stem / self.variant.name / f"seed{self.seed}"

    def title(self) -> str:
        return f"{self.spec.stem}/{self.variant.name}/seed{self.seed}"


def variants(grid: Grid, entry: SpecEntry, stages: int) -> list[Variant]:
    """The spec's variants: each strategy, each extra priority order (OSGD), each Oracle and
    standalone stage when asked for."""
    found = [Variant("anytime", strategy=s) for s in grid.strategies(entry)]
    found += [Variant("anytime", strategy="osgd", priority=tuple(p)) for p in entry.priorities]
    for kind, wanted in (("oracle", entry.oracle), ("standalone", entry.standalone)):
        if wanted:
            found += [Variant(kind, stage=k) for k in range(1, stages + 1)]  # type: ignore[arg-type]
    return found


def stage_count(spec: Path) -> int:
    from nestdsl.ir import build_ir
    from nestdsl.load import load

    return len(build_ir(load(spec)).stage_labels)


def cells(grid: Grid) -> list[Cell]:
    """Every cell of the grid, seeds outermost."""
    per_spec = [
        (grid.spec_path(entry), variants(grid, entry, stage_count(grid.spec_path(entry))))
        for entry in grid.specs
    ]
    return [
        Cell(spec, variant, seed, make_config(**grid.train, **variant.options(), seed=seed))
        for seed in grid.grid.seeds
        for spec, found in per_spec
        for variant in found
    ]


State = Literal["finished", "resume", "new"]


def state_of(cell: Cell, run_dir: Path) -> State:
    """Whether the cell's run is done, can be resumed, or must start (clearing a start that
    died before its first checkpoint). A run with other settings is refused (E934)."""
    if (run_dir / CHECKPOINT).is_file() or (run_dir / FINAL).is_file():
        stored_config(cell, run_dir)
        finished = (run_dir / FINAL).is_file() and (run_dir / RESULTS).is_file()
        return "finished" if finished else "resume"
    if run_dir.is_dir():
        shutil.rmtree(run_dir)
    return "new"


def stored_config(cell: Cell, run_dir: Path) -> TrainConfig:
    """The config a run in ``run_dir`` was trained with, when it trains what ``cell`` asks for.

    Fields that do not change this run are not compared: where they run (device, workers...)
    and options the cell's settings ignore (NormSGD's C for an SGD run), so tuning C in the
    grid does not throw away the finished runs of the other strategies. Any other difference
    is refused (E934); the stored config is what a resumed run continues with.
    """
    try:
        data = json.loads((run_dir / CONFIG).read_text(encoding="utf-8")).get("config") or {}
        stored = make_config(**data)
    except (OSError, ValueError, NestError):
        fail("E934", f"{run_dir} holds a run whose {CONFIG} cannot be read")
    before, now = stored.model_dump(mode="json"), cell.config.model_dump(mode="json")
    changed = sorted(
        key
        for key in set(before) | set(now)
        if before.get(key) != now.get(key) and _matters(key, cell.config)
    )
    if changed:
        fail(
            "E934",
            f"{run_dir} holds a run with other settings ({', '.join(changed)})",
            help="give the experiment another --out, or remove that run",
        )
    return stored


def _matters(key: str, config: TrainConfig) -> bool:
    """Whether a config field can change what a run with ``config`` learns."""
    if key in RUNTIME_FIELDS:
        return False
    applies = OPTION_APPLIES.get(key)
    return applies is None or applies[0](config)


@dataclass(frozen=True)
class Job:
    """What a worker process needs to train one cell (picklable)."""

    spec: Path
    config: TrainConfig
    run_dir: Path
    resume: bool
    threads: int


@dataclass(frozen=True)
class Outcome:
    """A trained cell: its wall time, or the error that stopped it."""

    seconds: float
    error: str | None = None


def train_cell(job: Job) -> Outcome:
    """Train (or resume) one cell in this process; a user error is returned, not raised, so
    one bad cell does not stop the others."""
    import torch

    from nestdsl.diagnostics import NestError
    from nestdsl.train.engine import train

    torch.set_num_threads(job.threads)
    start = time.perf_counter()
    try:
        train(job.spec, job.config, job.run_dir, progress=False, resume=job.resume)
    except NestError as error:
        return Outcome(time.perf_counter() - start, error.render())
    return Outcome(time.perf_counter() - start)


def _executor(jobs: int) -> Executor:
    """Worker processes (spawned: the parent may hold OpenMP state a fork would copy), or one
    thread for ``jobs == 1`` so a single run needs no second interpreter."""
    if jobs == 1:
        return ThreadPoolExecutor(1)
    return ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))


@dataclass(frozen=True)
class Summary:
    """What a call of :func:`run_grid` did."""

    skipped: int
    trained: int
    failed: list[str]


def run_grid(grid: Grid, out: Path, *, jobs: int = 1, report: Report = print) -> Summary:
    """Train every unfinished cell of ``grid`` under ``out``, ``jobs`` at a time."""
    from nestdsl.train.devices import thread_budget
    from nestdsl.train.engine import total_epochs

    todo: list[tuple[Cell, Job]] = []
    all_cells = cells(grid)
    for cell in all_cells:
        run_dir = cell.run_dir(out)
        state = state_of(cell, run_dir)
        if state != "finished":
            resume = state == "resume"
            config = stored_config(cell, run_dir) if resume else cell.config
            threads = thread_budget(jobs, config.workers)
            todo.append((cell, Job(cell.spec, config, run_dir, resume, threads)))
    skipped = len(all_cells) - len(todo)
    report(f"{len(all_cells)} runs: {skipped} finished, {len(todo)} to train ({jobs} at a time)")
    totals = {c.title(): total_epochs(c.config, stage_count(c.spec)) for c, _ in todo}
    failed: list[str] = []
    with _executor(jobs) as pool:
        futures = {pool.submit(train_cell, job): (cell, job) for cell, job in todo}
        for done, (future, cell, _job) in enumerate(_watch(futures, totals, report), start=1):
            outcome: Outcome = future.result()
            status = f"failed\n{outcome.error}" if outcome.error else "done"
            report(f"[{done}/{len(todo)}] {cell.title()} {status} ({outcome.seconds:.0f} s)")
            if outcome.error:
                failed.append(cell.title())
    return Summary(skipped, len(todo) - len(failed), failed)


def _watch(
    futures: dict[Future[Outcome], tuple[Cell, Job]],
    totals: dict[str, int],
    report: Report,
    poll: float = 1.0,
) -> Iterator[tuple[Future[Outcome], Cell, Job]]:
    """Yield futures as they finish; meanwhile report every new epoch of a running cell."""
    seen: dict[str, int] = {}
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=poll, return_when="FIRST_COMPLETED")
        for future in pending:
            cell, job = futures[future]
            epochs = _epochs_logged(job.run_dir)
            title = cell.title()
            if epochs != seen.get(title, epochs if job.resume else 0):
                report(f"  {title}: epoch {epochs}/{totals[title]}")
            seen[title] = epochs
        for future in finished:
            yield (future, *futures[future])


def _epochs_logged(run_dir: Path) -> int:
    path = run_dir / METRICS
    try:
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError:
        return 0
