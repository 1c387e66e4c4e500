"""Benchmark: wall-clock saving of confidence exits on real batches vs running every stage.

A trained run's test split is classified in batches three ways, interleaved per repeat so
machine noise hits all alike: every stage by anytime execution (no exits), every stage by
joint execution (``net(x)``, the fastest way to get all outputs), and with confidence exits
calibrated on the validation split for several target mean MACs (rows that leave are dropped
from the batch, so later stages compute only for the rest). Prints medians, the ratio to
anytime-all, and the ratio of mean MACs, the saving an ideal implementation would reach.

    python bench/exit_savings.py RUN_DIR [--batch 64] [--repeats 15] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from nestdsl.evaluate.exits import answer_costs, calibrate, confidences, exit_batch
from nestdsl.evaluate.report import as_nested
from nestdsl.trained import load_model

FRACTIONS = (0.25, 0.5, 0.75)
"""Targets as fractions of the way from C_1 (all exit at stage 1) to C_n (none exit early)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(args.run)
    net = as_nested(model.net).eval().to(device)
    data = model.datasets()
    batches = [x.to(device) for x, _ in DataLoader(data.test, batch_size=args.batch)]
    costs = answer_costs(net)
    val_conf = confidences(net, DataLoader(data.val, batch_size=args.batch), device)
    work: dict[str, tuple[Callable[[], object], float]] = {
        "all stages, anytime": (lambda: [list(net.anytime(x)) for x in batches], costs[-1]),
        "all stages, joint": (lambda: [net(x) for x in batches], costs[-1]),
    }
    for fraction in FRACTIONS:
        target = costs[0] + fraction * (costs[-1] - costs[0])
        thresholds = calibrate(val_conf, costs, target)
        stages = torch.cat([exit_batch(net, x, thresholds).stages for x in batches])
        mean = float(torch.tensor(costs, dtype=torch.float64)[stages - 1].mean())
        work[f"exits, target {target / 1e6:.2f}M MACs"] = (
            lambda t=thresholds: [exit_batch(net, x, t) for x in batches],
            mean,
        )
    times: dict[str, list[float]] = {name: [] for name in work}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, (run, _) in work.items():
                start = time.perf_counter()
                run()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["all stages, anytime"])
    print(
        f"{len(data.test)} test images, batches of {args.batch}, {args.repeats} repeats, {device}"
    )
    print(f"{'method':32} {'median':>9} {'vs anytime-all':>15} {'mean MACs':>10} {'MAC ratio':>10}")
    for name, (_, macs) in work.items():
        median = statistics.median(times[name])
        print(
            f"{name:32} {median * 1000:6.1f} ms {median / base:15.2f} "
            f"{macs / 1e6:9.2f}M {macs / costs[-1]:10.2f}"
        )


if __name__ == "__main__":
    main()
