"""Shared pieces of the data sources: the split record, stratified carving, channel checks.

The data layer's error codes (``D0xx``) are listed once, in ``docs/errors.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch.utils.data import Dataset

from nestdsl.diagnostics import fail

Shape = tuple[int, int, int]
"""A spec's input shape ``(C, H, W)``."""


@dataclass(frozen=True)
class SplitRecord:
    """How a source was divided: the three sizes and the rule in words (kept in config.json).

    Validation chooses models and hyper-parameters; test only reports, so a number measured on
    test was never used to pick anything.
    """

    train: int
    val: int
    test: int
    rule: str

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


@dataclass(frozen=True)
class DataSplit:
    """Training, validation and test sets for one source, with what a trainer needs to know.

    Items of every dataset are ``(image, label)``: a float32 ``[C, H, W]`` tensor already
    normalized with ``mean``/``std`` (kept here so exports and reports can undo or repeat it)
    and an int64 class index in ``0 .. num_classes - 1``. Only ``train`` is augmented.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rule: str
    """How the three sets were made, in words (recorded in the run's config)."""

    @property
    def record(self) -> SplitRecord:
        """The sizes of the three sets and how they were made."""
        sizes = (len(self.train), len(self.val), len(self.test))  # type: ignore[arg-type]
        return SplitRecord(*sizes, rule=self.rule)


def stratified_parts(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Fixed, stratified parts of ``range(len(labels))``: one per fraction, then the rest.

    Per class, a legacy ``numpy.random.RandomState(seed)`` permutation (a stream numpy
    guarantees never to change) gives the first ``round(f * n)`` members to the first part
    (at least one when the class has several, so tiny sets still validate), the next ones to
    the second, and so on. Indices come back sorted. The seed is a constant
    of the source, never the run's seed: the split must not move between runs.
    """
    rng = np.random.RandomState(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for i, fraction in enumerate(fractions):
            count = max(1, round(fraction * len(members))) if len(members) > 1 else 0
            parts[i].extend(members[start : start + count].tolist())
            start += count
        parts[-1].extend(members[start:].tolist())
    return [np.sort(np.asarray(part, dtype=np.int64)) for part in parts]


def check_channels(source: str, shape: Shape, allowed: tuple[int, ...]) -> None:
    """Refuse a channel count the source cannot produce, naming the ones it can."""
    channels = shape[0]
    if channels not in allowed:
        choices = " or ".join(str(c) for c in allowed)
        fail(
            "D003",
            f"data source `{source}` gives {choices}-channel images, "
            f"but the spec's input has {channels} channels",
            help=f"set the spec's input to {choices} channels, or use `--data synthetic`, "
            "which produces any shape",
        )
