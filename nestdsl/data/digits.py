"""scikit-learn's bundled handwritten digits: the default source, usable with no download.

1,797 real 8×8 grey images of the digits 0-9 (pixel values 0..16), shipped inside the
scikit-learn wheel. The train/validation/test split is fixed once and for all (it never
depends on the run's seed or the machine) so accuracies from different runs are comparable:
per class, 20 % of the images (rounded) go to test and the next 20 % to validation, chosen by
a legacy ``numpy.random.RandomState`` with a constant seed (see ``stratified_parts``).
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from nestdsl.data.base import DataSplit, Shape, check_channels, stratified_parts
from nestdsl.data.memory import TensorImageDataset
from nestdsl.data.transforms import normalize, resize
from nestdsl.diagnostics import fail

SPLIT_SEED = 1797
"""Constant seed of the three-way split (not the run's seed: the split must not move)."""

TEST_FRACTION = 0.2
VAL_FRACTION = 0.2
TRAIN_COUNT = 1079
VAL_COUNT = 359
TEST_COUNT = 359
RULE = "fixed stratified split of the 1,797 images: per class 20% test, 20% validation, rest train"

MEAN = 0.3045
STD = 0.3758
"""Pixel mean and standard deviation of the training split, after scaling 0..16 to [0, 1]."""


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    """The raw images (float64 [1797, 8, 8], 0..16) and labels; read once per process.

    Read from the file scikit-learn ships (what ``sklearn.datasets.load_digits`` reads, the
    same way): importing scikit-learn itself took 1.5 s, a large part of a short training
    run's start. Where the file is not where it has always been, or not as it has always
    been, scikit-learn reads it.
    """
    path = bundled_file()
    table = None
    if path is not None:
        with gzip.open(path, "rt") as text:
            table = np.loadtxt(text, delimiter=",")  # [1797, 65]: 64 pixels, then the label
    if table is None or table.shape != (TRAIN_COUNT + VAL_COUNT + TEST_COUNT, 65):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return np.asarray(bunch.images), np.asarray(bunch.target)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def bundled_file() -> Path | None:
    """scikit-learn's ``digits.csv.gz``, found without importing scikit-learn (None: not
    installed, or laid out otherwise)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    path = package / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train, validation and test indices of the fixed, stratified split."""
    _, labels = _load()
    test, val, train = stratified_parts(labels, (TEST_FRACTION, VAL_FRACTION), SPLIT_SEED)
    return train, val, test


def build_digits(arg: str | None, shape: Shape, *, augment: bool, seed: int) -> DataSplit:
    """Digits at the spec's size: resized once (bilinear), normalized, grey replicated to RGB.

    Training augmentation is a random shift by up to one pixel of the original 8×8 grid (no
    flips: a mirrored 2 is not a 2). ``seed`` is unused: the split is fixed on purpose.
    """
    del seed
    if arg:
        fail(
            "D002",
            f"data source `digits` takes no argument, got `digits:{arg}`",
            help="write `--data digits`",
        )
    check_channels("digits", shape, (1, 3))
    channels, height, width = shape
    images, labels = _load()
    tensor = torch.from_numpy(images / 16.0).float().unsqueeze(1)  # [N, 1, 8, 8]
    tensor = normalize(resize(tensor, (height, width)), (MEAN,), (STD,))
    tensor = tensor.expand(-1, channels, -1, -1).contiguous()
    targets = torch.from_numpy(labels).long()
    train_idx, val_idx, test_idx = (torch.from_numpy(i) for i in split_indices())
    shift = max(1, round(min(height, width) / 8)) if augment else 0
    background = -MEAN / STD
    return DataSplit(
        train=TensorImageDataset(
            tensor[train_idx], targets[train_idx], shift=shift, fill=background
        ),
        val=TensorImageDataset(tensor[val_idx], targets[val_idx]),
        test=TensorImageDataset(tensor[test_idx], targets[test_idx]),
        num_classes=10,
        name="digits",
        mean=(MEAN,) * channels,
        std=(STD,) * channels,
        rule=RULE,
    )
