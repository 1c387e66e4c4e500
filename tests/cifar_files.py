"""Tiny CIFAR batch files in the real python format, for data and training tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def batch_dict(n: int, seed: int, label_key: bytes, classes: int) -> dict:
    rng = np.random.RandomState(seed)
    return {
        b"batch_label": b"testing batch 1 of 1",
        label_key: rng.randint(0, classes, size=n).tolist(),
        b"data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(root: Path, n: int = 6) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate(CIFAR10_FILES):
        write_pickle(folder / name, batch_dict(n, i, b"labels", 10), protocol=2 + i % 4)
    return folder
