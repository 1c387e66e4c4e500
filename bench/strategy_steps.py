"""Benchmark: the cost of one training step under each gradient strategy, relative to SGD.

SGD needs one joint forward and one backward. The per-task strategies (NormSGD, OSGD,
OSGD-norm) run the anytime forward and one backward per stage, each through that stage's
subnetwork only, then combine the gradients from an n×n Gram matrix. The ratio to SGD is the
price of per-task gradients; docs/training.md explains the cost model. Medians over repeats,
strategies interleaved so that machine noise hits all alike.

    python bench/strategy_steps.py [SPEC ...] [--batch 64] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F

import nestdsl
from nestdsl.optim import fill_grad

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ["specs/digits_width.nest", "specs/digits_width_depth.nest"]
STRATEGIES = ["sgd", "sgd-norm", "osgd", "osgd-norm"]


def make_step(
    net: nestdsl.NestedNet, strategy: str, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> Callable[[], float]:
    stage_params = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> float:
        start = time.perf_counter()
        outputs = net(x) if strategy == "sgd" else list(islice(net.anytime(x), net.num_stages))
        losses = [F.cross_entropy(out, y) for out in outputs]
        fill_grad(losses, stage_params, strategy)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def compare(path: str, batch: int, repeats: int, device: torch.device) -> None:
    net = nestdsl.compile(nestdsl.load(ROOT / path)).to(device).train()
    x = torch.randn(batch, *net.input_shape, device=device)
    y = torch.randint(0, net.num_classes, (batch,), device=device)
    steps = {s: make_step(net, s, x, y, device) for s in STRATEGIES}
    for step in steps.values():  # warm-up
        step(), step()
    times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for _ in range(repeats):
        for strategy, step in steps.items():
            times[strategy].append(step())
    base = statistics.median(times["sgd"])
    print(f"\n{net.ir.name} ({' '.join(net.stage_labels)}), batch {batch}, {device}")
    print(f"  {'strategy':10s} {'ms/step':>8s} {'vs sgd':>7s}")
    for strategy in STRATEGIES:
        median = statistics.median(times[strategy])
        print(f"  {strategy:10s} {median * 1e3:8.1f} {median / base:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    for path in args.specs:
        compare(path, args.batch, args.repeats, torch.device(args.device))


if __name__ == "__main__":
    main()
