"""Reproduce the paper's Tables 1-2 on a spec: validation error per stage for each strategy.

Trains the spec once per (strategy, seed) with the same settings and prints a Markdown table
of mean (std) top-1 error in percent, stages as rows, strategies as columns, like the paper.

    python experiments/strategies.py specs/digits_width.nest --seeds 0 1 2 --norm-constant 0.005
    python experiments/strategies.py specs/resnet42_width.nest --data cifar10:/data/cifar \
        --epochs 200 --schedule exp --seeds 0 1 2          # the paper's CIFAR-10 setting
"""

from __future__ import annotations

import argparse
import statistics
import time

import nestdsl
from nestdsl.train import TrainConfig, train

STRATEGIES = ["greedy", "sgd", "osgd", "sgd-norm", "osgd-norm"]
HEADERS = {
    "greedy": "Greedy",
    "sgd": "SGD",
    "osgd": "OSGD",
    "sgd-norm": "SGD-Norm",
    "osgd-norm": "OSGD-Norm",
}


def run(args: argparse.Namespace) -> dict[str, list[list[float]]]:
    """errors[strategy][stage] = top-1 error (%) of every seed."""
    errors: dict[str, list[list[float]]] = {}
    for strategy in args.strategies:
        for seed in args.seeds:
            config = TrainConfig(
                data=args.data,
                strategy=strategy,
                epochs=args.epochs,
                schedule=args.schedule,
                seed=seed,
                device=args.device,
                norm_constant=args.norm_constant,
            )
            start = time.perf_counter()
            result = train(args.spec, config, progress=False)
            per_stage = errors.setdefault(strategy, [[] for _ in result.stages])
            for stage, metrics in enumerate(result.stages):
                per_stage[stage].append(100 * (1 - metrics.top1))
            took = time.perf_counter() - start
            print(
                f"{strategy:9s} seed {seed}: "
                + " ".join(f"{100 * (1 - m.top1):5.1f}" for m in result.stages)
                + f"  ({took:.0f}s)",
                flush=True,
            )
    return errors


def table(spec_path: str, errors: dict[str, list[list[float]]]) -> str:
    labels = nestdsl.build_ir(nestdsl.load(spec_path)).stage_labels
    strategies = list(errors)
    lines = [
        "| stage | " + " | ".join(HEADERS.get(s, s) for s in strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for stage, label in enumerate(labels):
        cells = []
        for s in strategies:
            values = errors[s][stage]
            spread = f" ({statistics.stdev(values):.1f})" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread}")
        lines.append(f"| {stage + 1} {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--norm-constant",
        type=float,
        default=0.5,
        help="NormSGD's C; calibrate it to the size of raw gradients",
    )
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    args = parser.parse_args()
    errors = run(args)
    print(f"\nTop-1 validation error (%), mean (std) over seeds {args.seeds}, {args.epochs} epochs")
    print(table(args.spec, errors))


if __name__ == "__main__":
    main()
