"""Shared pieces of the data sources: the split record, the error helper, channel checks.

Error codes of the data layer (documented in ``docs/data.md``):

- ``D001`` unknown data source name
- ``D002`` malformed source argument (``synthetic:abc``, ``cifar10`` without a path)
- ``D003`` the spec's input shape cannot be served by this source (channels, size)
- ``D004`` a path or an expected file is missing
- ``D005`` a data file is malformed (wrong keys, shapes, types)
- ``D006`` a pickle file asks for code outside the CIFAR format and is refused
- ``D007`` an optional dependency (Pillow) is not installed
- ``D008`` an image folder does not have the expected layout
- ``D009`` an image file cannot be decoded
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from torch.utils.data import Dataset

from nestdsl.diagnostics import Diagnostic, NestError

Shape = tuple[int, int, int]
"""A spec's input shape ``(C, H, W)``."""


@dataclass(frozen=True)
class DataSplit:
    """Training and validation sets for one source, with what a trainer needs to know.

    Items of both datasets are ``(image, label)``: a float32 ``[C, H, W]`` tensor already
    normalized with ``mean``/``std`` (kept here so exports and reports can undo or repeat it)
    and an int64 class index in ``0 .. num_classes - 1``.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def fail(code: str, message: str, help: str | None = None) -> NoReturn:
    """Raise a user-facing data error (no span: the fault is in the data, not the spec)."""
    raise NestError([Diagnostic(code=code, message=message, help=help)])


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
