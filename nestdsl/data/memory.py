"""An in-memory image dataset with optional cheap augmentation.

Small sources (digits) are decoded, resized and normalized once at construction, so an epoch
costs only indexing plus, for training, a random shift; nothing is recomputed per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from nestdsl.data.transforms import pad_random_crop, random_hflip


class TensorImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images ``[N, C, H, W]`` (float32, normalized) and labels ``[N]`` (int64).

    ``shift`` > 0 turns on random translation by up to that many pixels (padding with
    ``fill``, the normalized background); ``flip`` turns on random horizontal mirroring.
    Both draw from torch's global RNG, which the training loop seeds.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        shift: int = 0,
        flip: bool = False,
        fill: float | Sequence[float] = 0.0,
    ) -> None:
        if images.dim() != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"bad shapes: images {tuple(images.shape)}, labels {labels.shape}")
        self.images = images.float().contiguous()
        self.labels = labels.long().contiguous()
        self.shift = shift
        self.flip = flip
        self.fill = fill

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.shift > 0:
            image = pad_random_crop(image, self.shift, fill=self.fill)
        if self.flip:
            image = random_hflip(image)
        return image, self.labels[index]
