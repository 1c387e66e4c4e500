"""Compare the training strategies on a spec: test error per stage, two protocols, 95% CIs.

Every run trains on the source's training split, is *selected* on its validation split and
*reported* on its test split, which no choice ever looks at.

- ``paper``: the paper's protocol (its Tables 1-2): every strategy with the same learning rate
  (``--lr``, the paper's 0.1) and schedule. SGD (Eq. 1) averages the n losses while OSGD sums
  n orthogonalized gradients, so at one LR the strategies take steps of different sizes.
- ``fair``: each strategy gets its learning rate from the same ``--grid``, the one with the
  lowest validation error (mean over stages and ``--select-seeds``), and the ``sgd-sum``
  control (Eq. 1 on the *sum* of the losses) joins in, so a gap that is only a step size
  effect shows up as such.

Reported: mean test top-1 error (%) over ``--seeds`` ± the half-width of a 95% Student-t
interval, one table per protocol. Runs are cached in ``--cache`` (JSON lines keyed by
strategy, LR, seed and epochs), so both protocols share runs and an interrupted job resumes;
``--jobs N`` trains N runs at a time in worker processes.

    python experiments/strategies.py specs/digits_width.nest --protocol both \\
        --seeds 0 1 2 3 4 --epochs 5 --norm-constant 0.005 --cache runs/strategies.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from scipy import stats

import nestdsl
from nestdsl.train import TrainConfig, train

PAPER_STRATEGIES = ["greedy", "sgd", "osgd", "sgd-norm", "osgd-norm"]
CONTROL = "sgd-sum"
ALL = [*PAPER_STRATEGIES, CONTROL]
"""The fair protocol's columns: the paper's strategies and the sgd-sum control."""
HEADERS = {
    "greedy": "Greedy",
    "sgd": "SGD",
    "sgd-sum": "SGD-sum",
    "osgd": "OSGD",
    "sgd-norm": "SGD-Norm",
    "osgd-norm": "OSGD-Norm",
}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Outcome:
    """One finished run: top-1 error (%) per stage on validation and on test."""

    strategy: str
    lr: float
    seed: int
    epochs: int
    val: list[float]
    test: list[float]
    seconds: float

    @property
    def key(self) -> str:
        return run_key(self.strategy, self.lr, self.seed, self.epochs)


def run_key(strategy: str, lr: float, seed: int, epochs: int) -> str:
    return f"{strategy}|{lr:g}|{seed}|{epochs}"


@dataclass(frozen=True)
class Settings:
    """What every run of one experiment shares (picklable, for worker processes)."""

    spec: str
    data: str
    epochs: int
    schedule: str
    device: str
    norm_constant: float
    threads: int


Task = tuple[str, float, int]
"""(strategy, learning rate, seed)."""


def train_one(settings: Settings, task: Task) -> Outcome:
    """Train one (strategy, LR, seed) and measure it on validation and test."""
    strategy, lr, seed = task
    if settings.threads:
        torch.set_num_threads(settings.threads)
    config = TrainConfig(
        data=settings.data,
        strategy=strategy,
        epochs=settings.epochs,
        lr=lr,
        schedule=settings.schedule,
        seed=seed,
        device=settings.device,
        norm_constant=settings.norm_constant,
    )
    start = time.perf_counter()
    result = train(settings.spec, config, progress=False)
    return Outcome(
        strategy,
        lr,
        seed,
        settings.epochs,
        val=[100 * m.top1_error for m in result.stages],
        test=[100 * m.top1_error for m in result.test],
        seconds=round(time.perf_counter() - start, 1),
    )


class Runner:
    """Trains each (strategy, LR, seed) once, ``jobs`` at a time; caches every outcome."""

    def __init__(self, settings: Settings, cache: str | None, jobs: int) -> None:
        self.settings = settings
        self.cache = Path(cache) if cache else None
        self.jobs = jobs
        self.done: dict[str, Outcome] = {}
        if self.cache is not None and self.cache.is_file():
            for line in self.cache.read_text().splitlines():
                outcome = Outcome(**json.loads(line))
                self.done[outcome.key] = outcome

    def _key(self, task: Task) -> str:
        return run_key(*task, self.settings.epochs)

    def prefetch(self, tasks: list[Task]) -> None:
        """Train the tasks not yet done, in order, with up to ``jobs`` worker processes."""
        missing = list(dict.fromkeys(t for t in tasks if self._key(t) not in self.done))
        if self.jobs <= 1:
            for task in missing:
                self._record(train_one(self.settings, task))
            return
        with multiprocessing.Pool(self.jobs) as pool:
            work = partial(train_one, self.settings)
            for outcome in pool.imap_unordered(work, missing):
                self._record(outcome)

    def outcome(self, strategy: str, lr: float, seed: int) -> Outcome:
        task = (strategy, lr, seed)
        self.prefetch([task])
        return self.done[self._key(task)]

    def _record(self, outcome: Outcome) -> None:
        self.done[outcome.key] = outcome
        if self.cache is not None:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            with self.cache.open("a") as handle:
                handle.write(json.dumps(asdict(outcome)) + "\n")
        print(
            f"{outcome.strategy:9s} lr {outcome.lr:<6g} seed {outcome.seed}: val "
            + " ".join(f"{e:5.1f}" for e in outcome.val)
            + "  test "
            + " ".join(f"{e:5.1f}" for e in outcome.test)
            + f"  ({outcome.seconds:.0f}s)",
            flush=True,
        )


def paper_protocol(runner: Runner, args: argparse.Namespace) -> dict[str, list[Outcome]]:
    """Every paper strategy at the one learning rate ``--lr``."""
    return {s: [runner.outcome(s, args.lr, seed) for seed in args.seeds] for s in PAPER_STRATEGIES}


def choose_lr(runner: Runner, strategy: str, args: argparse.Namespace) -> float:
    """The grid LR with the lowest validation error, averaged over stages and seeds."""

    def validation_error(lr: float) -> float:
        outcomes = [runner.outcome(strategy, lr, seed) for seed in args.select_seeds]
        return statistics.mean(e for o in outcomes for e in o.val)

    return min(args.grid, key=validation_error)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95% Student-t confidence interval."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan
    t = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1))
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def table(labels: tuple[str, ...], results: dict[str, list[Outcome]]) -> str:
    """Markdown: stages as rows, strategies as columns, mean ± CI half-width of test error."""
    strategies = list(results)
    lines = [
        "| stage | " + " | ".join(HEADERS.get(s, s) for s in strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for stage, label in enumerate(labels):
        cells = []
        for s in strategies:
            mean, half = interval([o.test[stage] for o in results[s]])
            cells.append(f"{mean:.1f} ± {half:.1f}")
        lines.append(f"| {stage + 1} {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--protocol", choices=["paper", "fair", "both"], default="both")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=15, help="per stage for greedy")
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lr", type=float, default=0.1, help="the paper protocol's LR")
    parser.add_argument("--grid", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--select-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--norm-constant",
        type=float,
        default=0.5,
        help="NormSGD's C; calibrate it to the size of raw gradients",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.add_argument("--cache", default=None, help="JSON-lines file of finished runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = Settings(
        args.spec,
        args.data,
        args.epochs,
        args.schedule,
        args.device,
        args.norm_constant,
        args.threads,
    )
    runner = Runner(settings, args.cache, args.jobs)
    labels = nestdsl.build_ir(nestdsl.load(args.spec)).stage_labels
    what = (
        f"test top-1 error (%), mean ± {CONFIDENCE:.0%} CI half-width over seeds "
        f"{args.seeds}, {args.epochs} epochs (per stage for Greedy)"
    )
    paper = args.protocol in ("paper", "both")
    fair = args.protocol in ("fair", "both")
    runner.prefetch(
        (
            [(s, lr, seed) for seed in args.select_seeds for s in ALL for lr in args.grid]
            if fair
            else []
        )
        + ([(s, args.lr, seed) for seed in args.seeds for s in PAPER_STRATEGIES] if paper else [])
    )
    if paper:
        results = paper_protocol(runner, args)
        print(f"\nPaper protocol (every strategy at LR {args.lr:g}): {what}")
        print(table(labels, results))
    if fair:
        chosen = {s: choose_lr(runner, s, args) for s in ALL}
        runner.prefetch([(s, lr, seed) for seed in args.seeds for s, lr in chosen.items()])
        results = {
            s: [runner.outcome(s, lr, seed) for seed in args.seeds] for s, lr in chosen.items()
        }
        picks = ", ".join(f"{HEADERS[s]} {lr:g}" for s, lr in chosen.items())
        print(f"\nFair protocol (LR per strategy from {args.grid} on validation: {picks}): {what}")
        print(table(labels, results))


if __name__ == "__main__":
    main()
