"""Resource limits, checked while the IR is built and before any tensor is allocated.

A spec can ask for absurd sizes (`channels=999999999`, `count=999999999`); the builder counts
parameters, activations, layers, units and edges layer by layer and stops at the first limit
crossed with a positioned error (E501), in well under a second, instead of hanging or
exhausting memory later. Every count is arithmetic on channel and stripe sizes. Limits are
generous defaults; raise them with ``build_ir(spec, limits=Limits(max_params=...))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nestdsl import diagnostics
from nestdsl.diagnostics import Span


@dataclass(frozen=True)
class Limits:
    """The largest network the builder accepts (parameters are counted before pruning)."""

    max_params: int = 2_000_000_000
    """8 GB of float32 weights."""
    max_activations: int = 2_000_000_000
    """Output values of all layers for one example."""
    max_layers: int = 100_000
    max_units: int = 1_000_000
    max_edges: int = 50_000_000


@dataclass
class Usage:
    """What the layers built so far use, checked against :class:`Limits` as each is added."""

    limits: Limits = field(default_factory=Limits)
    totals: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.maxima = asdict(self.limits)  # once: asdict copies deeply

    def add(self, span: Span, **amounts: int) -> None:
        """Count one layer's ``params``, ``activations``, ``layers``, ``units``, ``edges``."""
        for name, amount in amounts.items():
            total = self.totals.get(name, 0) + amount
            self.totals[name] = total
            self.check(name, total, span)

    def check(self, name: str, total: int, span: Span) -> None:
        limit = self.maxima[f"max_{name}"]
        if total > limit:
            diagnostics.fail(
                "E501",
                f"the network needs more than {limit:,} {name} (the limit `max_{name}`): "
                f"at least {total:,} with this statement",
                span,
                f"use smaller sizes, or raise the limit with `Limits(max_{name}=...)`",
            )
