"""Benchmark: training epochs when two runs share the CPUs, with and without the thread budget.

One OSGD epoch of a spec (default `digits_width_depth`, training and validation) runs in a
fresh process. Three cases, interleaved round by round so that machine noise hits all alike:

- alone: one run on the machine (its budget is every available CPU);
- two, budget: two runs at once, each told ``NESTDSL_PARALLEL_RUNS=2``, so each takes half of
  the CPUs (`nestdsl.train.devices.thread_budget`);
- two, torch default: two runs at once, each unaware of the other: torch's default intra-op
  threads (every core) in both, as before the budget existed.

Each process imports and builds everything, reports ready and waits for a go line, so the
concurrent runs overlap for their whole epoch; the time measured is the epoch alone. Prints
medians and each case's ratio to the run alone (the target: two runs each at most about 2.5×
the run alone, with the budget).

    python bench/contention.py [--spec specs/digits_width_depth.nest] [--repeats 5]
        [--strategy osgd] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"alone": (1, True), "two, budget": (2, True), "two, torch default": (2, False)}
"""Case name → (concurrent runs, whether each is told how many share the machine)."""


def child(spec: str, strategy: str, batch: int) -> None:
    """One timed epoch in this process, after a ready/go handshake with the parent."""
    import torch

    from nestdsl.train import TrainConfig, train
    from nestdsl.train.devices import thread_budget

    config = TrainConfig(epochs=1, strategy=strategy, batch_size=batch, device="cpu")
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    train(spec, config, progress=False)
    seconds = time.perf_counter() - start
    print(
        json.dumps({"seconds": seconds, "threads": min(torch.get_num_threads(), thread_budget())})
    )


def environment(runs: int, budget: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.pop("NESTDSL_PARALLEL_RUNS", None)
    if budget:
        env["NESTDSL_PARALLEL_RUNS"] = str(runs)
    return env


def run_case(runs: int, budget: bool, args: argparse.Namespace) -> list[dict[str, float]]:
    """Start `runs` children, release them together, return each one's report."""
    command = [sys.executable, __file__, "--child", "--spec", args.spec]
    command += ["--strategy", args.strategy, "--batch", str(args.batch)]
    procs = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(runs, budget),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(runs)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a training process failed with exit code {proc.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/digits_width_depth.nest")
    parser.add_argument("--strategy", default="osgd")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.spec, args.strategy, args.batch)
        return
    times: dict[str, list[float]] = {name: [] for name in CASES}
    threads: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, (runs, budget) in CASES.items():
            reports = run_case(runs, budget, args)
            times[name] += [r["seconds"] for r in reports]
            threads[name] = int(reports[0]["threads"])
    alone = statistics.median(times["alone"])
    print(
        f"{args.spec}, {args.strategy}, batch {args.batch}, {args.repeats} rounds, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'case':22} {'threads':>7} {'median s':>9} {'min s':>7} {'max s':>7} {'vs alone':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:22} {threads[name]:7d} {median:9.2f} {min(values):7.2f} {max(values):7.2f}"
            f" {median / alone:9.2f}"
        )


if __name__ == "__main__":
    main()
