"""Compare the training strategies on a spec: test error per stage, two protocols, 95% CIs.

Every run trains on the source's training split, is *selected* on its validation split and
*reported* on its test split, which no choice ever looks at.

- ``paper``: the paper's protocol (its Tables 1-2): every strategy with the same learning rate
  (``--lr``, the paper's 0.1) and schedule.
- ``fair``: each strategy gets its learning rate from the same ``--grid``, the one with the
  lowest validation error (mean over stages and ``--select-seeds``), and the ``sgd-sum``
  control (Eq. 1 on the *sum* of the losses) joins in, so a gap that is only a step size
  effect shows up as such.

The runs are the cells of ``nestdsl experiment`` grids, one per learning rate, under
``--out/lr<LR>``: finished runs are skipped and an interrupted one resumes, so both protocols
share runs; ``--jobs N`` trains N runs at a time. Tables are mean (std) ±95% t half-width.

    python experiments/strategies.py specs/digits_width.nest --protocol both --seeds 0 1 2 3 4 \\
        --grid 0.1 0.3 --epochs 4 --norm-constant 0.005 --jobs 2 --out runs/strategies
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from nestdsl.experiment.grid import PAPER_STRATEGIES, Grid, GridInfo, SpecEntry
from nestdsl.experiment.runner import run_grid
from nestdsl.experiment.tables import RunRecord, find_runs, spec_table

CONTROL = "sgd-sum"


def train_at(args: argparse.Namespace, lr: float, strategies: list[str], seeds: list[int]) -> Path:
    """Train (or find) every (strategy, seed) at ``lr``; return the grid's output folder."""
    settings = {
        "data": args.data,
        "epochs": args.epochs,
        "lr": lr,
        "schedule": args.schedule,
        "device": args.device,
        "norm_constant": args.norm_constant,
    }
    grid = Grid(
        grid=GridInfo(name=f"strategies-lr{lr:g}", seeds=seeds, strategies=strategies),
        train=settings,
        specs=[SpecEntry(path=str(Path(args.spec).resolve()))],
    )
    out = Path(args.out) / f"lr{lr:g}"
    run_grid(grid, out, jobs=args.jobs)
    return out


def runs_of(folder: Path, strategies: list[str], seeds: list[int]) -> list[RunRecord]:
    return [r for r in find_runs([folder]) if r.variant in strategies and r.seed in seeds]


def choose_lr(args: argparse.Namespace, strategy: str) -> float:
    """The grid LR with the lowest validation error, averaged over stages and select seeds."""

    def validation_error(lr: float) -> float:
        folder = train_at(args, lr, [strategy], args.select_seeds)
        runs = runs_of(folder, [strategy], args.select_seeds)
        return statistics.fmean(e for r in runs for e in r.val_errors)

    return min(args.grid, key=validation_error)


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
    parser.add_argument("--out", default="runs/strategies", help="folder of the runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    spec = Path(args.spec).stem
    what = f"test top-1 error (%) over seeds {args.seeds}, {args.epochs} epochs (Greedy: per stage)"
    if args.protocol in ("paper", "both"):
        folder = train_at(args, args.lr, list(PAPER_STRATEGIES), args.seeds)
        print(f"\nPaper protocol (every strategy at LR {args.lr:g}): {what}")
        print(spec_table(runs_of(folder, list(PAPER_STRATEGIES), args.seeds), spec))
    if args.protocol in ("fair", "both"):
        chosen = {s: choose_lr(args, s) for s in [*PAPER_STRATEGIES, CONTROL]}
        runs = [
            run
            for strategy, lr in chosen.items()
            for run in runs_of(train_at(args, lr, [strategy], args.seeds), [strategy], args.seeds)
        ]
        picks = ", ".join(f"{s} {lr:g}" for s, lr in chosen.items())
        print(f"\nFair protocol (LR per strategy from {args.grid} on validation: {picks}): {what}")
        print(spec_table(runs, spec))


if __name__ == "__main__":
    main()
