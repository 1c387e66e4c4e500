"""Image transforms on tensors, written with plain torch ops (torchvision is not a dependency).

Every function takes one image ``[C, H, W]`` (``resize`` and ``normalize`` also take a batch
``[N, C, H, W]``) and returns a new tensor; inputs are never modified in place.

Randomness comes from ``generator`` when one is given and from torch's global RNG otherwise.
That is what makes training reproducible: the engine calls ``torch.manual_seed(seed)`` and
gives its ``DataLoader`` a seeded generator, and PyTorch seeds each loader worker's global RNG
from that generator, so augmentation draws the same numbers on every run with the same seed,
with or without workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

Size = tuple[int, int]
"""An output size ``(height, width)``."""


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[low, high]`` (both ends included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def resize(image: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear resize of ``[C, H, W]`` or ``[N, C, H, W]`` to ``size``, antialiased.

    Antialiasing matters when large photos are shrunk to network size; it is a no-op for
    enlarging (8×8 digits to 32×32).
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image.clone()
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(
        batch.float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return out if image.dim() == 4 else out.squeeze(0)


def hflip(image: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (the last axis)."""
    return image.flip(-1)


def random_hflip(
    image: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror left-right with probability ``p``."""
    return hflip(image) if float(torch.rand((), generator=generator)) < p else image


def pad_random_crop(
    image: torch.Tensor,
    padding: int,
    fill: float | Sequence[float] = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pad every side by ``padding`` then crop back to the original size at a random offset.

    This is the CIFAR-style "random translation by at most ``padding`` pixels". ``fill`` is the
    padding value, one number or one per channel (the normalized background colour, when the
    image is already normalized).
    """
    if padding <= 0:
        return image.clone()
    channels, height, width = image.shape
    fills = torch.as_tensor(fill, dtype=image.dtype).reshape(-1, 1, 1)
    padded = fills.expand(channels, height + 2 * padding, width + 2 * padding).clone()
    top = _randint(0, 2 * padding, generator)
    left = _randint(0, 2 * padding, generator)
    # Write the image into the padded canvas, then cut the window: same result as pad+crop.
    padded[:, padding : padding + height, padding : padding + width] = image
    return padded[:, top : top + height, left : left + width].clone()


def center_crop(image: torch.Tensor, size: Size) -> torch.Tensor:
    """The central ``size`` window; the image must be at least that large."""
    height, width = image.shape[-2:]
    out_h, out_w = size
    if out_h > height or out_w > width:
        raise ValueError(f"cannot center-crop {height}x{width} to {out_h}x{out_w}")
    top = (height - out_h) // 2
    left = (width - out_w) // 2
    return image[..., top : top + out_h, left : left + out_w].clone()


def resize_shorter(image: torch.Tensor, size: Size, ratio: float = 256 / 224) -> torch.Tensor:
    """Resize keeping the aspect ratio so the image covers ``ratio × size`` on both axes.

    For square targets this is the ImageNet evaluation step "resize the shorter side to
    256 for a 224 crop"; for non-square targets it guarantees the later center crop fits.
    """
    height, width = image.shape[-2:]
    scale = max(size[0] * ratio / height, size[1] * ratio / width)
    new = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    return resize(image, new)


def random_resized_crop(
    image: torch.Tensor,
    size: Size,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random area fraction ``scale`` with aspect ``ratio`` and resize it to ``size``.

    The Inception/ImageNet training augmentation: try ten random boxes; if none fits, fall back
    to the largest central box with the aspect ratio clamped into ``ratio``.
    """
    height, width = image.shape[-2:]
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_lo, log_hi, generator))
        crop_w = round(math.sqrt(target * aspect))
        crop_h = round(math.sqrt(target / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = _randint(0, height - crop_h, generator)
            left = _randint(0, width - crop_w, generator)
            return resize(image[..., top : top + crop_h, left : left + crop_w], size)
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        crop_h, crop_w = height, round(height * ratio[1])
    else:
        crop_w, crop_h = width, height
    return resize(center_crop(image, (crop_h, crop_w)), size)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(image - mean) / std`` per channel, for ``[C, H, W]`` or ``[N, C, H, W]``."""
    m = torch.as_tensor(mean, dtype=image.dtype).reshape(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype).reshape(-1, 1, 1)
    return (image - m) / s
