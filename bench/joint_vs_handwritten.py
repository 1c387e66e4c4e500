"""Benchmark: the compiled anytime network against a hand-written PyTorch model of D_n.

The brief asks joint execution to run about as fast as a hand-written model of the last
stage. The hand-written model below uses plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` residual
blocks of the same shapes as the spec (the pruned entries of D_n are simply zeros in a dense
convolution, so a hand-written D_n does the same arithmetic) plus one linear head per stage.
Each measurement alternates the two models and reports medians and their ratio.

    python bench/joint_vs_handwritten.py [SPEC ...] [--batch 32] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nestdsl
from nestdsl.ast import Block, Spec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ["specs/resnet42_width.nest", "specs/resnet50.nest", "specs/digits_width.nest"]


class Residual(nn.Module):
    """A torchvision-style basic or bottleneck residual unit."""

    def __init__(self, kind: str, cin: int, width: int, stride: int, expansion: int):
        super().__init__()
        out = width * expansion if kind == "bottleneck" else width
        shapes = (
            [(cin, width, 1, 1), (width, width, 3, stride), (width, out, 1, 1)]
            if kind == "bottleneck"
            else [(cin, width, 3, stride), (width, width, 3, 1)]
        )
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, k, s, k // 2, bias=False) for i, o, k, s in shapes
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, o, _, _ in shapes)
        self.proj = None
        if stride != 1 or cin != out:
            self.proj = nn.Sequential(
                nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            y = bn(conv(y))
            if i < len(self.convs) - 1:
                y = F.relu(y)
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class HandWritten(nn.Module):
    """A hand-written ResNet of the spec's full shapes with one classifier per stage."""

    def __init__(self, spec: Spec, stages: int):
        super().__init__()
        stem = spec.stem
        layers: list[nn.Module] = [
            nn.Conv2d(
                spec.input.channels,
                stem.channels,
                stem.kernel,
                stem.stride,
                stem.kernel // 2,
                bias=False,
            ),
            nn.BatchNorm2d(stem.channels),
            nn.ReLU(),
        ]
        if stem.pool == "max":
            layers.append(nn.MaxPool2d(3, 2, 1))
        cin = stem.channels
        for block in spec.blocks:
            cin = self._block(layers, block, cin)
        self.body = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(cin, spec.head.classes) for _ in range(stages))

    @staticmethod
    def _block(layers: list[nn.Module], block: Block, cin: int) -> int:
        if block.kind not in ("basic", "bottleneck"):
            raise SystemExit(f"the hand-written baseline covers residual specs, not {block.kind}")
        for r in range(block.count):
            unit = Residual(
                block.kind, cin, block.channels, block.stride if r == 0 else 1, block.expansion
            )
            layers.append(unit)
            cin = block.channels * (block.expansion if block.kind == "bottleneck" else 1)
        return cin

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = self.body(x).mean(dim=(2, 3))
        return [head(pooled) for head in self.heads]


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        loss = sum(out.float().logsumexp(1).mean() for out in model(x))
        loss.backward()  # type: ignore[union-attr]

    return step


def infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model(x)

    return step


def anytime_step(net: nestdsl.NestedNet, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            for _ in net.anytime(x):
                pass

    return step


def compare(path: str, batch: int, repeats: int, device: torch.device) -> None:
    spec = nestdsl.load(ROOT / path)
    net = nestdsl.compile(spec).to(device).train()
    hand = HandWritten(spec, net.num_stages).to(device).train()
    c, h, w = net.input_shape
    x = torch.randn(batch, c, h, w, device=device)
    rows = [
        ("train step (fwd+bwd)", train_step(net, x), train_step(hand, x)),
        ("inference (eval)", infer_step(net.eval(), x), infer_step(hand.eval(), x)),
        ("anytime, all stages", anytime_step(net.eval(), x), infer_step(hand.eval(), x)),
    ]
    print(f"\n{spec.name} ({' '.join(net.stage_labels)}), batch {batch}, {device}")
    print(f"  {'measure':24s} {'nestdsl ms':>11s} {'hand ms':>9s} {'ratio':>6s}")
    for name, ours, theirs in rows:
        for _ in range(2):  # warm-up
            ours(), theirs()
        a, b = [], []
        for _ in range(repeats):  # alternate so that machine noise hits both alike
            a.append(timed(ours, device))
            b.append(timed(theirs, device))
        ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(f"  {name:24s} {ma:11.1f} {mb:9.1f} {ma / mb:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    for path in args.specs:
        batch = args.batch if "224" not in (ROOT / path).read_text() else max(1, args.batch // 8)
        compare(path, batch, args.repeats, torch.device(args.device))


if __name__ == "__main__":
    main()
