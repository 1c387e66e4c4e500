"""``build_datasets``: parse a ``--data`` source string and dispatch to its builder.

A source is ``NAME`` or ``NAME:ARG``; the part after the first colon is the builder's
argument (a path for on-disk sources, so paths may themselves contain colons).
"""

from __future__ import annotations

from collections.abc import Callable

from nestdsl.data.base import DataSplit, Shape
from nestdsl.data.cifar import build_cifar10, build_cifar100
from nestdsl.data.digits import build_digits
from nestdsl.data.imagefolder import build_imagefolder
from nestdsl.data.synthetic import build_synthetic
from nestdsl.diagnostics import did_you_mean, fail

Builder = Callable[..., DataSplit]
"""``builder(arg, shape, *, augment, seed) -> DataSplit``; ``arg`` is None when absent."""

SOURCES: dict[str, Builder] = {
    "digits": build_digits,
    "synthetic": build_synthetic,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "imagefolder": build_imagefolder,
}
"""Source name → builder. The CLI lists these keys in ``--data``'s help."""

USAGE = {
    "digits": "digits",
    "synthetic": "synthetic[:N[:K]]",
    "cifar10": "cifar10:PATH",
    "cifar100": "cifar100:PATH",
    "imagefolder": "imagefolder:PATH",
}
"""How each source is written, for error messages and ``--help``."""

DEFAULT_SOURCE = "digits"


def build_datasets(
    source: str, input_shape: tuple[int, int, int], *, augment: bool = True, seed: int = 0
) -> DataSplit:
    """Training and validation datasets from ``source``, producing images of ``input_shape``.

    ``augment`` turns on the source's training augmentation (validation is never augmented).
    ``seed`` only chooses the synthetic data; real splits are fixed, and augmentation draws
    from torch's RNG, which the caller seeds (see ``nestdsl.data.transforms``).
    """
    shape = _check_shape(input_shape)
    name, sep, arg = source.strip().partition(":")
    name = name.strip().lower()
    builder = SOURCES.get(name)
    if builder is None:
        valid = ", ".join(f"`{u}`" for u in USAGE.values())
        fail(
            "D001",
            f"unknown data source `{name}`",
            help=" ".join(
                part for part in (did_you_mean(name, SOURCES), f"valid sources: {valid}") if part
            ),
        )
    return builder(arg if sep else None, shape, augment=augment, seed=seed)


def _check_shape(input_shape: tuple[int, int, int]) -> Shape:
    values = tuple(input_shape)
    if len(values) != 3 or not all(isinstance(v, int) and v > 0 for v in values):
        fail(
            "D003",
            f"input shape {values!r} is not (channels, height, width) of positive integers",
        )
    return (values[0], values[1], values[2])
