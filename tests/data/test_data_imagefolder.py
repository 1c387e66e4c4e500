"""ImageNet-style folders built from tiny PNGs in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nestdsl.data import build_datasets
from nestdsl.diagnostics import NestError

Image = pytest.importorskip("PIL.Image")


def _png(path: Path, size=(20, 14), value: int = 0, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.randint(0, 256, size=shape).astype(np.uint8), mode).save(path)


def make_folder(root: Path) -> Path:
    for split, n in (("train", 3), ("val", 2)):
        for c, name in enumerate(("cat", "dog", "emu")):
            for i in range(n):
                _png(root / split / name / f"{i}.png", value=c * 10 + i)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    _png(root / "train" / "dog" / "grey.PNG", mode="L")
    return root


def test_loads_classes_and_shapes(tmp_path):
    split = build_datasets(f"imagefolder:{make_folder(tmp_path)}", (3, 12, 10))
    assert split.num_classes == 3 and split.name == "imagefolder"
    assert len(split.train) == 7 and len(split.val) == 3 and len(split.test) == 6
    carved = [split.train, split.val]
    labels = sorted(int(ds[i][1]) for ds in carved for i in range(len(ds)))
    assert labels == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert sorted(int(split.val[i][1]) for i in range(3)) == [0, 1, 2]  # stratified
    for ds in (split.train, split.val, split.test):
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.shape == (3, 12, 10) and image.dtype == torch.float32
            assert label.dtype == torch.int64


def test_grey_and_deterministic_augmentation(tmp_path):
    split = build_datasets(f"imagefolder:{make_folder(tmp_path)}", (1, 8, 8))
    assert split.mean == (0.449,) and split.train[0][0].shape == (1, 8, 8)
    torch.manual_seed(3)
    a = [split.train[0][0] for _ in range(5)]
    torch.manual_seed(3)
    b = [split.train[0][0] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(split.val[0][0], split.val[0][0])


def _error(root: Path, shape=(3, 8, 8)):
    with pytest.raises(NestError) as err:
        build_datasets(f"imagefolder:{root}", shape)
    return err.value.diagnostics[0]


def test_missing_root_and_splits(tmp_path):
    assert _error(tmp_path / "missing").code == "D004"
    (tmp_path / "train" / "a").mkdir(parents=True)
    diag = _error(tmp_path)
    assert diag.code == "D008" and "`val`" in diag.message
    assert "PATH/train/<class>/<image>" in (diag.help or "")


def test_bad_layouts(tmp_path):
    root = make_folder(tmp_path)
    _png(root / "val" / "yak" / "0.png")
    diag = _error(root)
    assert diag.code == "D008" and "`yak`" in diag.message
    (root / "val" / "yak" / "0.png").unlink()
    (root / "val" / "yak").rmdir()
    (root / "train" / "zebra").mkdir()
    diag = _error(root)
    assert diag.code == "D008" and "zebra" in diag.message


def test_flat_folder_without_classes(tmp_path):
    _png(tmp_path / "train" / "0.png")
    (tmp_path / "val").mkdir()
    assert _error(tmp_path).code == "D008"


def test_corrupt_image_is_reported_on_access(tmp_path):
    root = make_folder(tmp_path)
    (root / "val" / "cat" / "0.png").write_bytes(b"garbage")
    split = build_datasets(f"imagefolder:{root}", (3, 8, 8))
    with pytest.raises(NestError) as err:
        split.test[0]
    assert err.value.diagnostics[0].code == "D009"


def test_missing_pillow_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    root = make_folder(tmp_path)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    diag = _error(root)
    assert diag.code == "D007" and "pip install pillow" in (diag.help or "")
