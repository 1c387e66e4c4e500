"""The bundled digits: counts, fixed stratified split, shapes, normalization, augmentation."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest
import torch

from nestdsl.data import build_datasets
from nestdsl.data import digits as D
from nestdsl.diagnostics import NestError


def _labels(ds) -> torch.Tensor:
    return ds.labels


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 16, 16), (3, 32, 32)])
def test_shapes_counts_labels(shape):
    split = build_datasets("digits", shape)
    assert split.name == "digits" and split.num_classes == 10
    assert len(split.train) == D.TRAIN_COUNT == 1079
    assert len(split.val) == D.VAL_COUNT == 359
    assert len(split.test) == D.TEST_COUNT == 359
    assert len(split.train) + len(split.val) + len(split.test) == 1797
    assert split.record.as_dict() == {"train": 1079, "val": 359, "test": 359, "rule": D.RULE}
    for ds in (split.train, split.val, split.test):
        image, label = ds[0]
        assert image.shape == shape and image.dtype == torch.float32
        assert label.dtype == torch.int64 and 0 <= int(label) <= 9
    assert len(split.mean) == len(split.std) == shape[0]


def test_split_is_fixed_disjoint_and_stratified():
    first, again = D.split_indices(), D.split_indices()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    train_a, val_a, test_a = first
    assert not set(train_a) & set(val_a) and not set(val_a) & set(test_a)
    assert not set(train_a) & set(test_a)
    assert len(set(train_a) | set(val_a) | set(test_a)) == 1797
    _, labels = D._load()
    all_counts = np.bincount(labels, minlength=10)
    for held in (val_a, test_a):
        counts = np.bincount(labels[held], minlength=10)
        assert np.all(np.abs(counts - 0.2 * all_counts) <= 0.5)
    # the seed argument must not move the split
    a = build_datasets("digits", (1, 8, 8), seed=0)
    b = build_datasets("digits", (1, 8, 8), seed=99)
    assert torch.equal(_labels(a.val), _labels(b.val))
    assert torch.equal(a.val.images, b.val.images)


def test_normalization_constants_match_training_split():
    images, _ = D._load()
    train_idx, _, _ = D.split_indices()
    pixels = images[train_idx] / 16.0
    assert abs(pixels.mean() - D.MEAN) < 1e-4
    assert abs(pixels.std() - D.STD) < 1e-4
    split = build_datasets("digits", (1, 8, 8), augment=False)
    assert abs(float(split.train.images.mean())) < 1e-3
    assert abs(float(split.train.images.std()) - 1.0) < 1e-3


def test_rgb_replicates_grey():
    image, _ = build_datasets("digits", (3, 16, 16)).val[3]
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_augmentation_shifts_train_only_and_is_seeded():
    split = build_datasets("digits", (1, 8, 8))
    stored = split.train.images[0]
    torch.manual_seed(0)
    first = [split.train[0][0] for _ in range(20)]
    torch.manual_seed(0)
    second = [split.train[0][0] for _ in range(20)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert any(not torch.equal(a, stored) for a in first)
    assert torch.equal(split.val[0][0], split.val.images[0])
    plain = build_datasets("digits", (1, 8, 8), augment=False)
    assert torch.equal(plain.train[0][0], plain.train.images[0])


def test_bad_channels_and_argument():
    with pytest.raises(NestError) as err:
        build_datasets("digits", (2, 8, 8))
    assert err.value.diagnostics[0].code == "D003"
    with pytest.raises(NestError) as err:
        build_datasets("digits:foo", (1, 8, 8))
    assert err.value.diagnostics[0].code == "D002"


def test_seeded_dataloader_with_workers_is_reproducible():
    """The engine's recipe: a seeded loader generator makes worker augmentation repeatable."""
    split = build_datasets("digits", (1, 8, 8))

    def batches() -> list[torch.Tensor]:
        torch.manual_seed(7)
        loader = torch.utils.data.DataLoader(
            split.train,
            batch_size=256,
            shuffle=True,
            num_workers=2,
            generator=torch.Generator().manual_seed(7),
        )
        return [x for x, _ in loader][:2]

    first, second = batches(), batches()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_bundled_file_reads_as_scikit_learn_reads_it():
    """The images and labels read from scikit-learn's file without importing it are exactly
    ``load_digits``'s: values, dtypes and shapes."""
    from sklearn.datasets import load_digits

    assert D.bundled_file() is not None
    images, labels = D._load()
    bunch = load_digits()
    assert images.dtype == bunch.images.dtype and labels.dtype == bunch.target.dtype
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)


@pytest.mark.parametrize("found", ["missing", "another layout"])
def test_scikit_learn_reads_the_file_where_it_changed(monkeypatch, tmp_path, found):
    """Without the file where it has always been, or with another layout in it,
    scikit-learn's own loader gives the data."""
    odd = tmp_path / "digits.csv.gz"
    with gzip.open(odd, "wt") as text:
        text.write("1,2,3\n4,5,6\n")
    monkeypatch.setattr(D, "bundled_file", lambda: None if found == "missing" else odd)
    D._load.cache_clear()
    try:
        images, labels = D._load()
        assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    finally:
        D._load.cache_clear()


def test_loading_the_digits_does_not_import_scikit_learn():
    """Importing scikit-learn took 1.5 s of every run's start on the digits."""
    code = (
        "import sys; from nestdsl.data import build_datasets; "
        "build_datasets('digits', (1, 16, 16)); print('sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
