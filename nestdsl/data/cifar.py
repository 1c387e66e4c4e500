"""CIFAR-10 and CIFAR-100 from the official "python version" batch files on local disk.

Each batch is a pickled dict: ``b"data"`` a uint8 array ``[N, 3072]`` (1024 red, then green,
then blue values, rows of 32), and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"``
(CIFAR-100). Files are read with a restricted unpickler (see ``safe_pickle``), so a tampered
file cannot run code. Images stay uint8 in memory (150 MB for CIFAR-10's training set) and
become float per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nestdsl.data import safe_pickle
from nestdsl.data.base import DataSplit, Shape, check_channels, stratified_parts
from nestdsl.data.transforms import normalize, pad_random_crop, random_hflip, resize
from nestdsl.diagnostics import fail

PADDING = 4
"""Random-crop padding of the standard CIFAR augmentation (pixels at 32×32)."""

VAL_FRACTION = 0.1
"""Share of each class of the training batches held out as validation (5,000 of 50,000)."""

SPLIT_SEED = 50000
"""Constant seed of the validation carve-out (not the run's seed: the split must not move)."""


@dataclass(frozen=True)
class Format:
    """What distinguishes the two CIFAR variants on disk and in statistics."""

    name: str
    title: str
    folder: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def expected(self) -> str:
        files = (
            f"`{self.train_files[0]}` … `{self.train_files[-1]}`"
            if len(self.train_files) > 2
            else " and ".join(f"`{f}`" for f in self.train_files)
        )
        return f"{files} and `{self.val_files[0]}` (the {self.title} 'python version')"


CIFAR10 = Format(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    val_files=("test_batch",),
    label_key=b"labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = Format(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    val_files=("test",),
    label_key=b"fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


class CifarDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """uint8 images ``[N, 3, 32, 32]``; per item: crop+flip (train), resize, normalize."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        size: tuple[int, int],
        augment: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.images = images
        self.labels = labels
        self.size = size
        self.augment = augment
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float().div_(255.0)
        if self.augment:
            # Black padding, as in the standard recipe: the crop happens before normalizing.
            image = random_hflip(pad_random_crop(image, PADDING))
        if tuple(image.shape[-2:]) != self.size:
            image = resize(image, self.size)
        return normalize(image, self.mean, self.std), self.labels[index]


def find_root(path: Path, fmt: Format) -> Path:
    """``path`` itself or its standard sub-folder, whichever holds the batch files."""
    if not path.exists():
        fail(
            "D004",
            f"{fmt.name} data path `{path}` does not exist",
            help=f"expected {fmt.expected} in `{path}` or `{path / fmt.folder}`",
        )
    for root in (path, path / fmt.folder):
        if all((root / f).is_file() for f in fmt.train_files + fmt.val_files):
            return root
    root = path / fmt.folder if (path / fmt.folder).is_dir() else path
    missing = [f for f in fmt.train_files + fmt.val_files if not (root / f).is_file()]
    fail(
        "D004",
        f"{fmt.name} batch files missing in `{root}`: " + ", ".join(f"`{m}`" for m in missing),
        help=f"expected {fmt.expected} in `{path}` or `{path / fmt.folder}`",
    )


def _get(batch: dict[Any, Any], key: bytes) -> Any:
    """A batch entry by its bytes key, also accepting str keys (re-pickled under Python 3)."""
    if key in batch:
        return batch[key]
    return batch.get(key.decode())


def read_batch(file: Path, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (uint8 ``[N, 3, 32, 32]``, int64 ``[N]``), or a D005/D006 error."""
    expected = f"expected {fmt.expected}"
    try:
        batch = safe_pickle.load(file.read_bytes())
    except safe_pickle.UnsafePickleError as err:
        fail(
            "D006",
            f"refusing to load `{file}`: it asks to run `{err.global_name}`, "
            "which no CIFAR batch file does",
            help=f"{expected}; re-extract the official archive",
        )
    except Exception as err:  # any unpickling fault means "not a CIFAR batch"
        fail("D005", f"`{file}` is not a CIFAR batch file ({err})", help=expected)
    if not isinstance(batch, dict):
        fail("D005", f"`{file}` is not a CIFAR batch file (no dict inside)", help=expected)
    data, labels = _get(batch, b"data"), _get(batch, fmt.label_key)
    key = fmt.label_key.decode()
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        fail("D005", f"`{file}`: `data` is not a uint8 array [N, 3072]", help=expected)
    if data.shape[1] != 3072:
        fail("D005", f"`{file}`: `data` rows have {data.shape[1]} values, not 3072", help=expected)
    try:
        targets = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        fail("D005", f"`{file}`: `{key}` is missing or not integers", help=expected)
    if labels is None or targets.shape[0] != data.shape[0]:
        fail("D005", f"`{file}`: `{key}` does not give one label per image", help=expected)
    if targets.size and (targets.min() < 0 or targets.max() >= fmt.num_classes):
        fail(
            "D005",
            f"`{file}`: `{key}` has values outside 0..{fmt.num_classes - 1}",
            help=expected,
        )
    return data.reshape(-1, 3, 32, 32), targets


def _load(files: tuple[str, ...], root: Path, fmt: Format) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_batch(root / f, fmt) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _build(fmt: Format, arg: str | None, shape: Shape, augment: bool) -> DataSplit:
    if not arg:
        fail(
            "D002",
            f"data source `{fmt.name}` needs a path",
            help=f"write `{fmt.name}:/path/to/{fmt.folder}` ({fmt.expected})",
        )
    check_channels(fmt.name, shape, (3,))
    root = find_root(Path(arg).expanduser(), fmt)
    size = (shape[1], shape[2])
    images, labels = _load(fmt.train_files, root, fmt)
    test_x, test_y = _load(fmt.val_files, root, fmt)
    val_idx, train_idx = (
        torch.from_numpy(i) for i in stratified_parts(labels.numpy(), (VAL_FRACTION,), SPLIT_SEED)
    )
    return DataSplit(
        train=CifarDataset(images[train_idx], labels[train_idx], size, augment, fmt.mean, fmt.std),
        val=CifarDataset(images[val_idx], labels[val_idx], size, False, fmt.mean, fmt.std),
        test=CifarDataset(test_x, test_y, size, False, fmt.mean, fmt.std),
        num_classes=fmt.num_classes,
        name=fmt.name,
        mean=fmt.mean,
        std=fmt.std,
        rule=f"validation: a fixed stratified {VAL_FRACTION:.0%} of the training batches; "
        f"test: `{fmt.val_files[0]}`",
    )


def build_cifar10(arg: str | None, shape: Shape, *, augment: bool, seed: int) -> DataSplit:
    """CIFAR-10: 45,000 training and 5,000 validation images from the 5 training batches, and
    the 10,000 test images as the test set."""
    del seed
    return _build(CIFAR10, arg, shape, augment)


def build_cifar100(arg: str | None, shape: Shape, *, augment: bool, seed: int) -> DataSplit:
    """CIFAR-100 (fine labels): 45,000 training and 5,000 validation images carved from the
    training file, and the 10,000 test images as the test set."""
    del seed
    return _build(CIFAR100, arg, shape, augment)
