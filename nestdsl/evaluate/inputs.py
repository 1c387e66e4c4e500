"""Inputs for ``nestdsl run``: image files, a folder of them, or a ``.npy`` array, preprocessed
as the run's data was (resized to the network's input, normalized with the source's mean and
standard deviation).

Images go through the image-folder source's evaluation pipeline (decoded with Pillow to [0,
1], resized and centre-cropped, normalized). A ``.npy`` array holds raw pixels: ``[H, W]`` (one
grey image), ``[N, H, W]`` (N grey images) or ``[N, C, H, W]``; uint8 values are read as 0..255,
floats as [0, 1]. Grey inputs are replicated for a 3-channel network, as the digits source does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nestdsl.data.base import Shape
from nestdsl.data.imagefolder import EXTENSIONS, ImageFolderDataset
from nestdsl.data.transforms import normalize, resize
from nestdsl.diagnostics import fail


@dataclass(frozen=True)
class Inputs:
    """Preprocessed inputs ([N, C, H, W]) and a name for each (file name, or array[i])."""

    names: tuple[str, ...]
    images: Tensor


@dataclass(frozen=True)
class Preprocessing:
    """The network's input shape and the data source's normalization."""

    shape: Shape
    mean: tuple[float, ...]
    std: tuple[float, ...]


def read_inputs(path: Path, prep: Preprocessing) -> Inputs:
    """Read ``path`` (a ``.npy`` file, an image, or a folder of images, sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            fail("E912", f"no images in `{path}`", help=f"supported: {_supported()}")
        return _read_images(files, prep)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        fail("E912", f"cannot read `{path}` as an input", help=f"supported: {_supported()}")
    return reader(path, prep)


def _supported() -> str:
    return ", ".join(sorted({*EXTENSIONS, ".npy"})) + ", or a folder of images"


def _read_images(files: list[Path], prep: Preprocessing) -> Inputs:
    dataset = ImageFolderDataset(files, [0] * len(files), prep.shape, False, prep.mean, prep.std)
    images = torch.stack([dataset[i][0] for i in range(len(files))])  # [N, C, H, W]
    return Inputs(tuple(f.name for f in files), images)


def _read_image(path: Path, prep: Preprocessing) -> Inputs:
    return _read_images([path], prep)


def _read_array(path: Path, prep: Preprocessing) -> Inputs:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        fail("E912", f"cannot read `{path}` as a numpy array ({error})")
    if array.ndim not in (2, 3, 4) or array.dtype.kind not in "uif":
        fail(
            "E913",
            f"`{path}` holds a {array.dtype} array of shape {array.shape}",
            help="give numbers shaped [H, W], [N, H, W] or [N, C, H, W]",
        )
    pixels = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if array.dtype == np.uint8:
        pixels = pixels / 255.0
    batch = pixels.reshape(-1, *pixels.shape[-2:]).unsqueeze(1) if array.ndim < 4 else pixels
    batch = _channels(batch, prep.shape[0], path)
    images = normalize(resize(batch, (prep.shape[1], prep.shape[2])), prep.mean, prep.std)
    return Inputs(tuple(f"{path.name}[{i}]" for i in range(batch.shape[0])), images)


def _channels(batch: Tensor, channels: int, path: Path) -> Tensor:
    """Grey to colour by replication; any other mismatch is an error."""
    if batch.shape[1] == channels:
        return batch
    if batch.shape[1] == 1:
        return batch.expand(-1, channels, -1, -1)
    fail(
        "E913",
        f"`{path}` has {batch.shape[1]} channels but the network takes {channels}",
        help="give [N, C, H, W] with the network's channel count, or grey images",
    )


_READERS: dict[str, Callable[[Path, Preprocessing], Inputs]] = {
    ".npy": _read_array,
    **{suffix: _read_image for suffix in EXTENSIONS},
}
"""File suffix → reader."""
