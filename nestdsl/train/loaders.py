"""DataLoaders whose sample order and augmentation are a function of (seed, epoch, rank).

The order comes from a DistributedSampler seeded with ``seed`` and told the epoch (its
permutation is ``randperm(N, seed + epoch)``), also in single-process runs, so W ranks taking
every W-th index see exactly the samples of the one-process run. Augmentation draws from
torch's global RNG, which the engine reseeds at every epoch start; worker processes get seeds
from the loader's generator, reseeded from the same epoch seed. An epoch therefore replays
identically no matter what ran before it — the basis of exact resumption.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from nestdsl.train.distributed import DistContext, split_batch

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for one (seed, epoch, rank); nearby inputs give unrelated seeds."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, epoch, rank])
    return int(state.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Reseed every global RNG an epoch may draw from (torch, numpy, random)."""
    value = epoch_seed(seed, epoch, rank)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def _seed_worker(worker_id: int) -> None:
    """numpy and random in a worker follow the per-worker torch seed PyTorch assigned it."""
    value = torch.initial_seed() % 2**32
    np.random.seed(value)
    random.seed(value)


class Shard(Sampler[int]):
    """Every ``world``-th index from ``rank``: the ranks' shards cover each sample exactly once.

    (A DistributedSampler pads the shards to equal length by repeating samples, which would
    count them twice in an evaluation.)
    """

    def __init__(self, size: int, rank: int, world: int) -> None:
        self.indices = range(rank, size, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochLoaders:
    """The training loader (reseeded per epoch) and the validation loader."""

    def __init__(
        self,
        train: Dataset[Batch],
        val: Dataset[Batch],
        *,
        batch_size: int,
        seed: int,
        workers: int,
        pin_memory: bool,
        context: DistContext,
    ) -> None:
        self.seed = seed
        self.context = context
        self.sampler: DistributedSampler[Batch] = DistributedSampler(
            train,
            num_replicas=context.world_size,
            rank=context.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        self.generator = torch.Generator()
        extra = {"persistent_workers": False, "worker_init_fn": _seed_worker} if workers else {}
        self.train: DataLoader[Batch] = DataLoader(
            train,
            batch_size=split_batch(batch_size, context.world_size),
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin_memory,
            generator=self.generator,
            **extra,  # type: ignore[arg-type]
        )
        self.batch_size = batch_size
        self.workers = workers
        self.pin_memory = pin_memory
        self.val = self.held_out(val)

    def held_out(self, dataset: Dataset[Batch]) -> DataLoader[Batch]:
        """An evaluation loader (validation or test): fixed order, large batches, and in a
        distributed run this rank's shard (see `Shard`)."""
        size = len(dataset)  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_size=max(self.batch_size, 256),
            sampler=Shard(size, self.context.rank, self.context.world_size),
            num_workers=self.workers,
            pin_memory=self.pin_memory,
        )

    def start_epoch(self, epoch: int) -> None:
        """Fix this epoch's order and the worker seeds (call before iterating ``train``)."""
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.seed, epoch, self.context.rank))
