"""Synthetic images: any shape, any size, no files — for tests and throughput benchmarks.

Each class has a smooth random prototype (a 4×4 random pattern upsampled to the input size).
An item is its class prototype plus smooth noise of the same kind (which is what makes the
task hard: it cannot be averaged away by more pixels) plus independent pixel noise, scaled so
pixels have roughly zero mean and unit variance. The smooth noise grows with ``sqrt(C)`` so
the difficulty hardly depends on the shape: a nearest-class-mean classifier scores about
80-85 % at 1×8×8 and 3×32×32 alike (chance 10 %), leaving room for bigger networks to help.

A split of up to ``PRECOMPUTE_LIMIT`` values is generated at once, vectorized, and kept in
memory (the default 2048 × 3×32×32 takes 25 MB and a fraction of a second), so loading costs
nothing in a throughput benchmark. Larger splits (ImageNet-sized inputs) are generated item by
item from a per-item seed instead, so memory does not grow with ``N``. Either way the data are
a pure function of (source string, shape, seed): bit-identical on every call, process and
DataLoader worker. Labels cycle ``0, 1, …, K-1`` so classes are balanced.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from nestdsl.data.base import DataSplit, Shape
from nestdsl.data.memory import TensorImageDataset
from nestdsl.data.transforms import resize
from nestdsl.diagnostics import fail

DEFAULT_SIZE = 2048
DEFAULT_CLASSES = 10
PRECOMPUTE_LIMIT = 1 << 26
"""Largest split (in float32 values, 256 MiB) generated up front; larger ones are lazy."""

COARSE = 1.25
"""Smooth-noise amplitude per sqrt(channel), relative to the unit-amplitude prototypes."""

_MASK = (1 << 63) - 1


def _item_seed(seed: int, index: int) -> int:
    """A distinct generator seed per (run seed, item) pair; mixing keeps streams apart."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) & _MASK


def _coarse(shape: Shape) -> tuple[int, int, int]:
    """The grid the class signal and the smooth noise are drawn on before upsampling."""
    return (shape[0], min(4, shape[1]), min(4, shape[2]))


def prototypes(shape: Shape, num_classes: int, seed: int) -> torch.Tensor:
    """One smooth, standardized pattern per class: ``[K, C, H, W]``."""
    generator = torch.Generator().manual_seed(_item_seed(seed, -1))
    fine = resize(torch.randn(num_classes, *_coarse(shape), generator=generator), shape[1:])
    return _standardize(fine)


def _standardize(batch: torch.Tensor) -> torch.Tensor:
    flat = batch.reshape(batch.shape[0], -1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return flat.reshape(batch.shape)


def _smooth_noise_std(shape: Shape) -> float:
    """Std of upsampled unit noise (bilinear smoothing shrinks it), measured once, fixed seed."""
    generator = torch.Generator().manual_seed(0)
    sample = resize(torch.randn(64, *_coarse(shape), generator=generator), shape[1:])
    return float(sample.std()) or 1.0


class _Mixer:
    """How an image is made from a prototype and noise, shared by both generation paths."""

    def __init__(self, patterns: torch.Tensor) -> None:
        shape = (patterns.shape[1], patterns.shape[2], patterns.shape[3])
        coarse = COARSE * math.sqrt(shape[0])
        scale = 1.0 / math.sqrt(1.0 + coarse**2 + 1.0)  # unit signal, smooth and pixel noise
        self.patterns = patterns * scale  # pre-scaled: fewer ops per item
        self.shape = shape
        self.grid = _coarse(shape)
        self.smooth = coarse * scale / _smooth_noise_std(shape)
        self.scale = scale

    def make(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images ``[len(labels), C, H, W]`` for ``labels``, drawing noise from ``generator``."""
        count = labels.shape[0]
        smooth = resize(torch.randn(count, *self.grid, generator=generator), self.shape[1:])
        images = torch.randn(count, *self.shape, generator=generator).mul_(self.scale)
        return images.add_(self.patterns[labels]).add_(smooth, alpha=self.smooth)


class SyntheticDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``size`` items generated on access from seeds ``offset .. offset + size - 1``."""

    def __init__(self, mixer: _Mixer, size: int, seed: int, offset: int) -> None:
        self.mixer = mixer
        self.size = size
        self.seed = seed
        self.offset = offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        label = torch.tensor(index % self.mixer.patterns.shape[0], dtype=torch.int64)
        generator = torch.Generator().manual_seed(_item_seed(self.seed, self.offset + index))
        return self.mixer.make(label.reshape(1), generator)[0], label


def _split(
    mixer: _Mixer, size: int, seed: int, offset: int
) -> Dataset[tuple[torch.Tensor, torch.Tensor]]:
    """The in-memory dataset when it is small enough, else the lazy one."""
    if size * math.prod(mixer.shape) > PRECOMPUTE_LIMIT:
        return SyntheticDataset(mixer, size, seed, offset)
    labels = torch.arange(size) % mixer.patterns.shape[0]
    generator = torch.Generator().manual_seed(_item_seed(seed, -2 - offset))
    return TensorImageDataset(mixer.make(labels, generator), labels)


MAX_SIZE = 100_000_000
MAX_CLASSES = 100_000
"""Larger synthetic sets cannot even be shuffled in memory (a permutation of N int64s)."""


def _parse(arg: str | None) -> tuple[int, int]:
    """``None`` / ``"N"`` / ``"N:K"`` → (N, K), refusing anything else with the accepted forms."""
    if not arg:
        return DEFAULT_SIZE, DEFAULT_CLASSES
    parts = arg.split(":")
    usage = (
        f"write `synthetic`, `synthetic:N` (1 ≤ N ≤ {MAX_SIZE:,} training images) or "
        f"`synthetic:N:K` (2 ≤ K ≤ {MAX_CLASSES:,})"
    )
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        fail("D002", f"malformed synthetic data source `synthetic:{arg}`", help=usage)
    size = int(parts[0])
    classes = int(parts[1]) if len(parts) == 2 else DEFAULT_CLASSES
    if not 1 <= size <= MAX_SIZE or not 2 <= classes <= MAX_CLASSES:
        fail("D002", f"synthetic data source `synthetic:{arg}` is out of range", help=usage)
    return size, classes


def build_synthetic(arg: str | None, shape: Shape, *, augment: bool, seed: int) -> DataSplit:
    """``N`` training and ``max(1, N // 4)`` validation and test items of exactly ``shape``.

    ``seed`` picks the prototypes and noise (default 0: the same data everywhere).
    ``augment`` has no effect: the noise already varies every image.
    """
    del augment
    size, classes = _parse(arg)
    mixer = _Mixer(prototypes(shape, classes, seed))
    channels = shape[0]
    held = max(1, size // 4)
    return DataSplit(
        train=_split(mixer, size, seed, offset=0),
        val=_split(mixer, held, seed, offset=size),
        test=_split(mixer, held, seed, offset=size + held),
        num_classes=classes,
        name="synthetic",
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        rule="independent draws: N train, N // 4 validation, N // 4 test",
    )
