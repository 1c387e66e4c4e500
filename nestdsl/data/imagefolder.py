"""ImageNet-style image folders: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*``.

Classes are the sorted sub-folder names of ``train``; ``val`` may only use those names, so a
class index means the same thing in both. Images are decoded with Pillow, an optional
dependency (``pip install pillow``), one at a time as the loader asks for them. Training uses
the Inception-style random-resized crop and a horizontal flip; validation and test resize so
the image covers 1.14× the target (256 for 224) and take the central crop.

Splits follow ImageNet practice, where the labelled ``val`` folder is the only held-out set
and so serves as the test set: validation is a fixed, stratified 10 % of ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nestdsl.data.base import DataSplit, Shape, check_channels, stratified_parts
from nestdsl.data.transforms import (
    center_crop,
    normalize,
    random_hflip,
    random_resized_crop,
    resize_shorter,
)
from nestdsl.diagnostics import fail

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"})
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
MEAN_GREY = (0.449,)
STD_GREY = (0.226,)
"""ImageNet statistics; the grey ones are the averages over the three channels."""

VAL_FRACTION = 0.1
"""Share of each class of ``train`` held out as validation."""

SPLIT_SEED = 1281167
"""Constant seed of the validation carve-out (not the run's seed: the split must not move)."""

LAYOUT = (
    "expected `PATH/train/<class>/<image>` and `PATH/val/<class>/<image>` "
    f"(one sub-folder per class; images {', '.join(sorted(EXTENSIONS))})"
)


def _pillow() -> Any:
    """The ``PIL.Image`` module, or a clear D007 error when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError:
        fail(
            "D007",
            "the `imagefolder` data source needs Pillow to decode images",
            help="`pip install pillow` (or `pip install nestdsl[images]`)",
        )
    return Image


class ImageFolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Decodes ``files[i]`` on access; ``augment`` picks the training or validation pipeline."""

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        shape: Shape,
        augment: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.mode = "L" if shape[0] == 1 else "RGB"
        self.size = (shape[1], shape[2])
        self.augment = augment
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, index: int) -> torch.Tensor:
        """The image as float ``[C, H, W]`` in [0, 1], at its stored size."""
        image_module = _pillow()
        file = self.files[index]
        try:
            with image_module.open(file) as img:
                array = np.asarray(img.convert(self.mode), dtype=np.uint8)
        except Exception as err:  # Pillow raises several types for corrupt files
            fail("D009", f"cannot decode image `{file}` ({err})", help="remove or replace it")
        tensor = torch.from_numpy(array.copy())
        tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
        return tensor.float().div_(255.0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.decode(index)
        if self.augment:
            image = random_hflip(random_resized_crop(image, self.size))
        else:
            image = center_crop(resize_shorter(image, self.size), self.size)
        return normalize(image, self.mean, self.std), self.labels[index]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """Class names and, per split, the image files with their labels; errors explain layout."""
    if not root.is_dir():
        fail("D004", f"image folder `{root}` does not exist", help=LAYOUT)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            fail("D008", f"image folder `{root}` has no `{split}` sub-folder", help=LAYOUT)
    classes = _classes(root / "train")
    if not classes:
        fail("D008", f"`{root / 'train'}` has no class sub-folders", help=LAYOUT)
    unknown = sorted(set(_classes(root / "val")) - set(classes))
    if unknown:
        fail(
            "D008",
            f"`{root / 'val'}` has classes missing from `train`: "
            + ", ".join(f"`{c}`" for c in unknown),
            help="`val` must use the class folder names of `train`",
        )
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, tuple[list[Path], list[int]]] = {}
    for split in ("train", "val"):
        files: list[Path] = []
        labels: list[int] = []
        for name in _classes(root / split):
            found = _images(root / split / name)
            if split == "train" and not found:
                fail("D008", f"class folder `{root / split / name}` has no images", help=LAYOUT)
            files.extend(found)
            labels.extend([index[name]] * len(found))
        if not files:
            fail("D008", f"`{root / split}` has no images", help=LAYOUT)
        splits[split] = (files, labels)
    return classes, splits


def build_imagefolder(arg: str | None, shape: Shape, *, augment: bool, seed: int) -> DataSplit:
    """Train/val image folders at the spec's size with ImageNet augmentation and statistics;
    validation carved from ``train``, ``val`` as the test set (see the module doc)."""
    del seed
    if not arg:
        fail(
            "D002",
            "data source `imagefolder` needs a path",
            help="write `imagefolder:/path/to/folder`; " + LAYOUT,
        )
    check_channels("imagefolder", shape, (1, 3))
    _pillow()
    classes, splits = scan(Path(arg).expanduser())
    mean, std = (MEAN_GREY, STD_GREY) if shape[0] == 1 else (MEAN_RGB, STD_RGB)
    files, labels = splits["train"]
    val_idx, train_idx = stratified_parts(np.asarray(labels), (VAL_FRACTION,), SPLIT_SEED)

    def subset(indices: np.ndarray, augmented: bool) -> ImageFolderDataset:
        chosen = indices.tolist()
        return ImageFolderDataset(
            [files[i] for i in chosen], [labels[i] for i in chosen], shape, augmented, mean, std
        )

    return DataSplit(
        train=subset(train_idx, augment),
        val=subset(val_idx, False),
        test=ImageFolderDataset(*splits["val"], shape, False, mean, std),
        num_classes=len(classes),
        name="imagefolder",
        mean=mean,
        std=std,
        rule=f"validation: a fixed stratified {VAL_FRACTION:.0%} of `train`; test: `val`",
    )
