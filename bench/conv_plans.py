"""Benchmark and calibration: every block-wise plan of every width-nested convolution.

``nestdsl.compiler.plans`` chooses, per layer and device type, how joint execution runs a
width-nested convolution: the dense weight, or runs of stripes each convolving only the input
prefix it reads. It chooses by a cost table (``DEVICE_COSTS``). This script measures what the
table only estimates: for each distinct width-nested convolution of the given specs (shape,
kernel, input size, stride), it times forward + backward of the layer (convolution,
BatchNorm, activation) under every candidate plan, interleaved and rotating, and prints

- per convolution: the fastest plan measured, the plan the table picks, and how much slower
  the pick is than the fastest;
- per spec: the time of all its width-nested convolutions under the table's picks, under the
  dense weight everywhere and under one block per stripe, each over the fastest plans;
- the cost-table row, from a grid of candidates, whose picks are fastest in total: what to
  put in ``DEVICE_COSTS`` for this device type.

    python bench/conv_plans.py [SPEC ...] [--batch 16] [--repeats 7] [--device cuda]
        [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from joint_vs_handwritten import timed

import nestdsl
from nestdsl.compiler.ops import ConvOp
from nestdsl.compiler.plans import (
    DEVICE_COSTS,
    Block,
    ConvShape,
    DeviceCost,
    candidate_plans,
    cheapest_plan,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = [
    "specs/digits_width.nest",
    "specs/digits_width_depth.nest",
    "specs/resnet42_width.nest",
    "specs/sparse_resnet98_alternating.nest",
]
GRID = [
    DeviceCost(full_rate_channels=rate, per_block=block)
    for rate, block in itertools.product(
        (8, 16, 32, 64, 128, 256), (0.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
    )
]
"""Cost-table rows tried when fitting one to the measurements."""


@dataclass
class Conv:
    """One distinct width-nested convolution: an op to run it, its input, where it occurs."""

    op: ConvOp
    x: torch.Tensor
    uses: dict[str, int] = field(default_factory=dict)
    """Spec name -> how many of its layers have this shape."""

    @property
    def shape(self) -> ConvShape:
        assert self.op.shape is not None
        return self.op.shape

    def label(self) -> str:
        shape, (_, _, h, w) = self.shape, self.x.shape
        stripes = "/".join(map(str, shape.stripes))
        layer = self.op.layer
        return f"{shape.in_channels}->{stripes} k{shape.kernel} s{layer.stride} {h}x{w} {layer.act}"


def collect(paths: list[str], batch: int, device: torch.device) -> list[Conv]:
    """The distinct width-nested convolutions of the specs, with a random input each."""
    found: dict[tuple[object, ...], Conv] = {}
    for path in paths:
        net = nestdsl.compile(nestdsl.load(ROOT / path)).train()
        sizes: dict[str, tuple[int, int]] = {}
        hooks = [
            op.register_forward_hook(
                lambda mod, args, _out, sizes=sizes: sizes.__setitem__(
                    mod.layer.id, args[0][0].shape[-2:]
                )
            )
            for op in net.ops.values()
            if isinstance(op, ConvOp) and op.shape is not None
        ]
        with torch.no_grad():
            net(torch.zeros(1, *net.input_shape))
        for hook in hooks:
            hook.remove()
        for layer_id, (h, w) in sizes.items():
            op = net.op(layer_id)
            assert isinstance(op, ConvOp) and op.shape is not None
            layer = op.layer
            key = (op.shape, h, w, layer.stride, layer.padding, layer.dilation, layer.bn, layer.act)
            if key not in found:
                x = torch.randn(batch, op.shape.in_channels, h, w, device=device)
                found[key] = Conv(op.to(device), x.requires_grad_())
            uses = found[key].uses
            uses[net.ir.name] = uses.get(net.ir.name, 0) + 1
    return list(found.values())


def describe(plan: tuple[Block, ...]) -> str:
    """``[0-1|2]``: stripes 0 and 1 in one block, stripe 2 in another."""
    runs = (f"{b.first}" if b.stop == b.first + 1 else f"{b.first}-{b.stop - 1}" for b in plan)
    return "[" + "|".join(runs) + "]"


def step(conv: Conv, plan: tuple[Block, ...], device: torch.device) -> Callable[[], None]:
    """Forward and backward of the layer under ``plan`` (input and parameter gradients)."""
    inputs = [conv.x, *conv.op.parameters()]

    def run() -> None:
        conv.op.use_plan(device.type, plan)
        y = conv.op([conv.x])
        torch.autograd.grad(y, inputs, torch.ones_like(y))

    return run


def measure(conv: Conv, repeats: int, device: torch.device) -> dict[tuple[Block, ...], float]:
    """Median milliseconds per candidate plan, the plans rotating within each repeat."""
    plans = candidate_plans(conv.shape)
    steps = [step(conv, plan, device) for plan in plans]
    for run in steps:
        run()
    times: list[list[float]] = [[] for _ in plans]
    for r in range(repeats):
        order = list(range(len(plans)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            times[i].append(timed(steps[i], device) * 1e3)
    return {plan: statistics.median(t) for plan, t in zip(plans, times, strict=True)}


def total(
    convs: list[Conv],
    times: list[dict[tuple[Block, ...], float]],
    spec: str,
    choose: Callable[[Conv, dict[tuple[Block, ...], float]], tuple[Block, ...]],
) -> float:
    """Milliseconds of one spec's width-nested convolutions when ``choose`` picks the plans."""
    return sum(
        conv.uses.get(spec, 0) * measured[choose(conv, measured)]
        for conv, measured in zip(convs, times, strict=True)
    )


def fastest(_conv: Conv, measured: dict[tuple[Block, ...], float]) -> tuple[Block, ...]:
    return min(measured, key=measured.__getitem__)


def by_table(costs: DeviceCost, device: str) -> Callable[..., tuple[Block, ...]]:
    return lambda conv, _measured: cheapest_plan(conv.shape, device, costs)


def dense_everywhere(conv: Conv, _measured: object) -> tuple[Block, ...]:
    return candidate_plans(conv.shape)[0]


def stripes_everywhere(conv: Conv, _measured: object) -> tuple[Block, ...]:
    return conv.shape.blocks([(j, j + 1) for j in range(len(conv.shape.stripes))])


def summarize(
    convs: list[Conv], times: list[dict[tuple[Block, ...], float]], device: str, table: DeviceCost
) -> None:
    """Per spec: each way of choosing plans over the fastest; then the best-fitting row."""
    print("\n  spec: width-nested convolutions, ms (over the fastest plans)")
    specs = list(dict.fromkeys(name for conv in convs for name in conv.uses))
    choices = {"table": by_table(table, device), "dense": dense_everywhere}
    choices["stripes"] = stripes_everywhere
    for spec in specs:
        floor = total(convs, times, spec, fastest)
        cells = []
        for name, choose in choices.items():
            ms = total(convs, times, spec, choose)
            cells.append(f"{name} {ms:.1f} ({ms / floor:.2f}x)")
        print(f"  {spec:30s} fastest {floor:.1f}, " + ", ".join(cells))
    row = fit(convs, times, device)
    print(f"\n  best-fitting table row for {device}: {row}")
    for spec in specs:
        floor = total(convs, times, spec, fastest)
        fitted = total(convs, times, spec, by_table(row, device))
        print(f"  {spec:30s} fitted row {fitted:.1f} ms ({fitted / floor:.2f}x the fastest)")


def fit(convs: list[Conv], times: list[dict[tuple[Block, ...], float]], device: str) -> DeviceCost:
    """The grid row whose picks take the least time over every convolution and use."""

    def cost(row: DeviceCost) -> float:
        pick = by_table(row, device)
        return sum(
            sum(conv.uses.values()) * measured[pick(conv, measured)]
            for conv, measured in zip(convs, times, strict=True)
        )

    return min(GRID, key=cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    table = DEVICE_COSTS.get(device.type, DEVICE_COSTS["cuda"])
    print(
        f"torch {torch.__version__}, {device}, batch {args.batch}, {torch.get_num_threads()} "
        f"threads, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
        f"table row: {table}"
    )
    convs = collect(args.specs, args.batch, device)
    times = []
    heads = ("fastest", "ms", "table", "ms")
    print(f"\n  {'convolution':40s} {'uses':>4s} " + " ".join(f"{h:>12s}" for h in heads))
    for conv in convs:
        measured = measure(conv, args.repeats, device)
        times.append(measured)
        best, pick = fastest(conv, measured), by_table(table, device.type)(conv, measured)
        print(
            f"  {conv.label():40s} {sum(conv.uses.values()):4d} {describe(best):>12s} "
            f"{measured[best]:12.2f} {describe(pick):>12s} {measured[pick]:12.2f}"
            f"  ({measured[pick] / measured[best]:.2f}x)"
        )
    summarize(convs, times, device.type, table)


if __name__ == "__main__":
    main()
