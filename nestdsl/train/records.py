"""`EpochRecord`: what one finished epoch reports, one line of ``metrics.jsonl``.

The engine writes it, the run directory stores it, the progress bar and TensorBoard read it:
one dataclass instead of a dict whose string keys each reader would have to spell the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

PER_STAGE_SERIES: tuple[str, ...] = ("train_loss", "val_loss", "val_top1", "val_top5")
"""The per-stage series of a record, in the order logs show them."""


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: per-stage training losses (None for stages a greedy phase does not train)
    and validation metrics (accuracies as fractions), with the LR and counters."""

    epoch: int
    """1-based, counted over the whole run (a greedy run has n × epochs of them)."""
    stage: int | None
    """The greedy stage being trained, None for every other strategy."""
    lr: float
    train_loss: list[float | None]
    val_loss: list[float]
    val_top1: list[float]
    val_top5: list[float]
    steps: int
    time: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        """Read a stored record (unknown keys from other versions are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def series(self, name: str) -> list[float | None]:
        """One of :data:`PER_STAGE_SERIES` by name (for writers that loop over them)."""
        if name not in PER_STAGE_SERIES:
            raise KeyError(name)
        return list(getattr(self, name))
