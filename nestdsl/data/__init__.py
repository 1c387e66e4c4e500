"""Datasets for training and evaluation, from a ``--data`` source string.

``build_datasets("digits", (1, 16, 16))`` returns a :class:`DataSplit` whose ``train`` and
``val`` datasets yield ``(image [C, H, W] float32, label int64)``. Sources: ``digits``
(bundled, the default), ``synthetic[:N[:K]]``, ``cifar10:PATH``, ``cifar100:PATH``,
``imagefolder:PATH``. See ``docs/data.md``.
"""

from nestdsl.data.base import DataSplit
from nestdsl.data.registry import DEFAULT_SOURCE, SOURCES, USAGE, build_datasets

__all__ = ["DEFAULT_SOURCE", "SOURCES", "USAGE", "DataSplit", "build_datasets"]
