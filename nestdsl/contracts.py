"""The nested-network contract (docs/contracts.md) as a :class:`typing.Protocol`.

Training, evaluation and launching accept any module with these members, not only the
compiled :class:`nestdsl.compiler.NestedNet`: a hand-written anytime network can be trained by
the same engine. The protocol is runtime-checkable, so the engine can refuse a module that
lacks a member (T011) before any data is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class StageLabelled(Protocol):
    """What evaluation needs beyond ``net(x)``: a label per stage output (``w1``, ``d2`` ...)."""

    stage_labels: tuple[str, ...]


@runtime_checkable
class AnytimeNetwork(StageLabelled, Protocol):
    """An anytime network with one output per stage (see ``docs/contracts.md``)."""

    num_stages: int
    input_shape: tuple[int, int, int]
    num_classes: int

    def __call__(self, x: Tensor) -> list[Tensor]:
        """Joint execution: every stage's logits ``[B, classes]``."""
        ...

    def anytime(self, x: Tensor) -> Iterator[Tensor]:
        """Stage by stage; the graph behind output k touches D_k only."""
        ...

    def stage_parameters(self, k: int) -> list[nn.Parameter]:
        """Parameters of D_k (trunk units of stage <= k and heads 1..k), nested in k."""
        ...

    def new_parameters(self, k: int) -> list[nn.Parameter]:
        """w_k minus w_(k-1): what stage k introduces (greedy training)."""
        ...

    def loss_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters loss k reaches: its subnetwork by loss path (NormSGD membership)."""
        ...

    def subnetwork(self, k: int) -> nn.Module:
        """D_k alone, a single-output module."""
        ...
