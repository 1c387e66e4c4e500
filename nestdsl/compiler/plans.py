"""How joint execution runs a width-nested convolution: one dense weight, or blocks of stripes.

Width nesting prunes every back-edge from a later stripe to an earlier one, so the kept input
channels of output stripe j are the prefix of input stripes 0..j: the layer's dense weight is
block lower-triangular, and a third of its multiply-accumulates (for 1:1:2 stripes) multiply
zeros. A *block* is a run of consecutive output stripes computed by one convolution of the
input prefix that the block's stripes read; one block over everything is the dense weight,
one block per stripe computes no zeros at all. Which partition is fastest depends on the
device: small convolutions run at a lower rate than large ones, and every extra block copies
its input prefix and adds a kernel. A per-device cost table decides (``plan_blocks``); the
search is exhaustive over the 2^(n-1) partitions of n stripes (n is at most a handful).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Execution = Literal["auto", "dense", "blockwise"]
"""How joint execution runs width-nested convolutions: ``auto`` picks per layer and device
from ``DEVICE_COSTS``; ``dense`` always multiplies the dense weight (pruned entries are zero);
``blockwise`` runs one convolution per stripe over only its kept inputs (no zeros)."""

EXECUTIONS: tuple[Execution, ...] = ("auto", "dense", "blockwise")


@dataclass(frozen=True)
class Block:
    """Output stripes ``first .. stop - 1``, computed by one convolution of the first
    ``width`` input channels (the widest prefix any of them reads)."""

    first: int
    stop: int
    width: int

    @property
    def stripes(self) -> range:
        return range(self.first, self.stop)


@dataclass(frozen=True)
class DeviceCost:
    """A device's convolution cost model, in multiply-accumulates per output pixel.

    A convolution whose narrower side (input or output channels) has fewer than
    ``full_rate_channels`` runs at that fraction of the full rate (vector units and tiles
    are left partly empty); each block beyond the first costs ``per_block`` (a kernel, its
    weight assembly), and a plan of several blocks copies input prefixes and concatenates
    outputs (one unit per channel copied).
    """

    full_rate_channels: int
    per_block: float


DEVICE_COSTS: dict[str, DeviceCost] = {
    # Measured on the 2-core development machine (docs/performance.md): 8- and 16-channel
    # stripes lose to the dense weight, 16/16/32 and wider stripes win.
    "cpu": DeviceCost(full_rate_channels=32, per_block=64.0),
    # Fitted with bench/conv_plans.py on an H100 (batch 128, docs/performance.md): every
    # width-nested convolution of the CIFAR-size and digits specs, stripes of 4 to 128
    # channels, ran fastest with the dense weight (a layer's forward and backward cost about
    # the same whatever its width: launches, not arithmetic, bound them), so narrower stripes
    # than 256 channels count as slow. Wider ones (resnet50_width) still run block-wise.
    "cuda": DeviceCost(full_rate_channels=256, per_block=4096.0),
}
"""Device type -> cost table; other device types use the CUDA row."""


@dataclass(frozen=True)
class ConvShape:
    """What planning needs of a convolution: output ``stripes``, the input prefix each
    stripe reads (``kept``), the input width and the kernel size."""

    stripes: tuple[int, ...]
    kept: tuple[int, ...]
    in_channels: int
    kernel: int

    def blocks(self, runs: Sequence[tuple[int, int]]) -> tuple[Block, ...]:
        """Blocks of the given runs of stripes, each reading its widest prefix."""
        return tuple(Block(a, b, max(self.kept[a:b])) for a, b in runs)

    def cost(self, plan: tuple[Block, ...], device: DeviceCost) -> float:
        """Estimated cost of ``plan`` per output pixel: the convolutions, the input prefix
        copies, and, with several blocks, the per-block overhead and the output concat."""
        total = 0.0
        for block in plan:
            out = sum(self.stripes[block.first : block.stop])
            rate = min(1.0, min(out, block.width) / device.full_rate_channels)
            total += out * block.width * self.kernel**2 / rate
            total += block.width if block.width < self.in_channels else 0
        if len(plan) > 1:
            total += device.per_block * (len(plan) - 1) + sum(self.stripes)
        return total


def _runs(n: int) -> list[list[tuple[int, int]]]:
    """Every split of stripes 0..n-1 into runs of consecutive stripes."""
    result = []
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), n]
        result.append(list(itertools.pairwise(bounds)))
    return result


def dense_plan(shape: ConvShape, device: str) -> tuple[Block, ...]:
    """One block: the dense weight over the whole input."""
    return (Block(0, len(shape.stripes), shape.in_channels),)


def stripe_plan(shape: ConvShape, device: str) -> tuple[Block, ...]:
    """One block per stripe: only kept unit pairs are multiplied."""
    return shape.blocks([(j, j + 1) for j in range(len(shape.stripes))])


def candidate_plans(shape: ConvShape) -> list[tuple[Block, ...]]:
    """The dense weight, then every partition of the stripes into runs (2^(n-1) for n)."""
    dense = dense_plan(shape, "any")
    return [dense, *(p for p in map(shape.blocks, _runs(len(shape.stripes))) if p != dense)]


def cheapest_plan(
    shape: ConvShape, device: str, costs: DeviceCost | None = None
) -> tuple[Block, ...]:
    """The candidate plan that ``costs`` (default: ``DEVICE_COSTS`` for ``device``) rates
    cheapest; the dense weight on ties."""
    costs = costs or DEVICE_COSTS.get(device, DEVICE_COSTS["cuda"])
    plans = candidate_plans(shape)
    # An index into a list of costs rather than min(key=...): torch.compile traces the
    # first call of a layer, plan included, and cannot trace min's key argument.
    estimates = [shape.cost(plan, costs) for plan in plans]
    return plans[estimates.index(min(estimates))]


PLANNERS: dict[Execution, Callable[[ConvShape, str], tuple[Block, ...]]] = {
    "auto": cheapest_plan,
    "dense": dense_plan,
    "blockwise": stripe_plan,
}
"""Execution mode -> planner, for layers whose stripes read input prefixes."""
