"""CIFAR batches written in the real python format into tmp_path; errors; unsafe pickles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from cifar_files import batch_dict, make_cifar10, write_pickle

from nestdsl.data import build_datasets
from nestdsl.data.cifar import CIFAR10
from nestdsl.diagnostics import NestError


def test_cifar10_loads_from_parent_or_folder(tmp_path):
    folder = make_cifar10(tmp_path)
    for path in (tmp_path, folder):
        split = build_datasets(f"cifar10:{path}", (3, 32, 32), augment=False)
        assert len(split.train) == 24 and len(split.val) == 6  # 10% of each class, at least one
        assert len(split.test) == 6
        assert split.num_classes == 10 and split.name == "cifar10"
        assert split.mean == CIFAR10.mean
        image, label = split.train[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert label.dtype == torch.int64 and 0 <= int(label) < 10


def test_cifar10_pixel_layout_and_normalization(tmp_path):
    folder = make_cifar10(tmp_path)
    raw = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    split = build_datasets(f"cifar10:{folder}", (3, 32, 32), augment=False)
    image, label = split.train[2]
    expected = torch.from_numpy(raw[b"data"][2].reshape(3, 32, 32)).float() / 255
    mean = torch.tensor(CIFAR10.mean).view(3, 1, 1)
    std = torch.tensor(CIFAR10.std).view(3, 1, 1)
    assert torch.allclose(image * std + mean, expected, atol=1e-5)
    assert int(label) == raw[b"labels"][2]


def test_cifar10_augmentation_and_resize(tmp_path):
    folder = make_cifar10(tmp_path)
    split = build_datasets(f"cifar10:{folder}", (3, 32, 32))
    plain = build_datasets(f"cifar10:{folder}", (3, 32, 32), augment=False)
    torch.manual_seed(0)
    first = [split.train[1][0] for _ in range(10)]
    torch.manual_seed(0)
    second = [split.train[1][0] for _ in range(10)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert any(not torch.equal(a, plain.train[1][0]) for a in first)
    assert torch.equal(split.val[0][0], plain.val[0][0])  # validation is never augmented
    small = build_datasets(f"cifar10:{folder}", (3, 16, 24))
    assert small.train[0][0].shape == (3, 16, 24) and small.val[0][0].shape == (3, 16, 24)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 8), ("test", 4)):
        batch = batch_dict(n, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * n
        write_pickle(folder / name, batch, protocol=pickle.HIGHEST_PROTOCOL)
    split = build_datasets(f"cifar100:{tmp_path}", (3, 32, 32))
    assert len(split.train) + len(split.val) == 8 and len(split.test) == 4
    assert split.num_classes == 100
    assert split.train[0][0].shape == (3, 32, 32)


def _error(source: str, shape=(3, 32, 32)):
    with pytest.raises(NestError) as err:
        build_datasets(source, shape)
    return err.value.diagnostics[0]


def test_missing_path_names_expected_files(tmp_path):
    diag = _error(f"cifar10:{tmp_path / 'nope'}")
    assert diag.code == "D004"
    assert "`data_batch_1` … `data_batch_5` and `test_batch`" in (diag.help or "")
    assert "cifar-10-batches-py" in (diag.help or "")


def test_missing_files_are_listed(tmp_path):
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    diag = _error(f"cifar10:{tmp_path}")
    assert diag.code == "D004" and "`data_batch_3`" in diag.message
    diag = _error(f"cifar100:{tmp_path}")
    assert diag.code == "D004" and "`train`" in diag.message and "`test`" in diag.message


@pytest.mark.parametrize(
    "content",
    [
        b"not a pickle at all",
        pickle.dumps([1, 2, 3]),
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}),
    ],
)
def test_malformed_file(tmp_path, content):
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(content)
    diag = _error(f"cifar10:{folder}")
    assert diag.code == "D005" and "data_batch_2" in diag.message
    assert "test_batch" in (diag.help or "")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_code_executing_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = make_cifar10(tmp_path)
    write_pickle(folder / "test_batch", {b"data": _Exploit(), b"labels": []})
    diag = _error(f"cifar10:{folder}")
    assert diag.code == "D006" and "system" in diag.message
    assert not (tmp_path / "pwned.txt").exists()


def test_cifar_needs_three_channels(tmp_path):
    assert _error(f"cifar10:{make_cifar10(tmp_path)}", (1, 32, 32)).code == "D003"
