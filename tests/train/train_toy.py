"""A tiny width-nested network implementing the NestedNet contract (docs/contracts.md).

Stage k adds one hidden stripe (a Linear + optional BatchNorm) and one head reading the
stripes 1..k, so D_1 ⊂ D_2 ⊂ ... and stage k's output depends only on units of stage <= k.
It stands in for the compiler in the training tests: fast, deterministic, BN optional.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class ToyNested(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 8, 8),
        num_classes: int = 10,
        widths: tuple[int, ...] = (4, 4, 8),
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.num_stages = len(widths)
        self.widths = tuple(widths)
        self.batchnorm = batchnorm
        self.stage_labels = tuple(f"w{2**k}" for k in range(len(widths)))
        features = math.prod(input_shape)
        self.stripes = nn.ModuleList(nn.Linear(features, w) for w in widths)
        self.norms = nn.ModuleList(
            (nn.BatchNorm1d(w) if batchnorm else nn.Identity()) for w in widths
        )
        self.heads = nn.ModuleList(
            nn.Linear(sum(widths[: k + 1]), num_classes) for k in range(len(widths))
        )

    def anytime(self, x: Tensor) -> Iterator[Tensor]:
        flat = x.flatten(1)
        hidden: list[Tensor] = []
        for k in range(self.num_stages):
            hidden.append(torch.relu(self.norms[k](self.stripes[k](flat))))
            yield self.heads[k](torch.cat(hidden, dim=1))

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.anytime(x))

    def new_parameters(self, k: int) -> list[nn.Parameter]:
        i = k - 1
        modules = (self.stripes[i], self.norms[i], self.heads[i])
        return [p for m in modules for p in m.parameters()]

    def stage_parameters(self, k: int) -> list[nn.Parameter]:
        return [p for j in range(1, k + 1) for p in self.new_parameters(j)]

    def loss_parameters(self, k: int) -> list[nn.Parameter]:
        """Stripes and norms 1..k and head k: what loss k reaches."""
        modules = [*self.stripes[:k], *self.norms[:k], self.heads[k - 1]]
        return [p for m in modules for p in m.parameters()]

    def subnetwork(self, k: int) -> nn.Module:
        sub = ToyNested(self.input_shape, self.num_classes, self.widths[:k], self.batchnorm)
        sub.load_state_dict(
            {key: v for key, v in self.state_dict().items() if key in sub.state_dict()}
        )
        return Last(sub)


class Last(nn.Module):
    """Standalone D_k: a single-output network (the last stage of a truncated ToyNested)."""

    def __init__(self, net: ToyNested) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[-1]


def make_toy(**kwargs: object) -> ToyNested:
    torch.manual_seed(0)
    return ToyNested(**kwargs)  # type: ignore[arg-type]


TINY_SPEC = """nest 1
# A 3-stage width-nested plain net for 8x8 inputs: fast enough for end-to-end tests.
network tiny
input    shape=(1, 8, 8)
stem     conv channels=8 kernel=3
block    s1 plain count=1 channels=8 stride=1
head     classes=10
schedule width * 2
"""


def write_tiny_spec(directory: object) -> str:
    """Write TINY_SPEC into ``directory`` (a pathlib.Path) and return the file's path."""
    from pathlib import Path

    path = Path(str(directory)) / "tiny.nest"
    path.write_text(TINY_SPEC, encoding="utf-8")
    return str(path)


def states_equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
