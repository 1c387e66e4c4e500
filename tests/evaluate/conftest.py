"""A tiny trained run shared by the evaluation tests (1 epoch on 64 synthetic images)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from train_toy import write_tiny_spec


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `nestdsl train` run directory of the tiny 3-stage spec (8x8 inputs)."""
    from nestdsl.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("evaluate")
    config = TrainConfig(data="synthetic:64", epochs=1, batch_size=32, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(write_tiny_spec(folder), config, folder / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return folder / "run"


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> Iterator[None]:
    """Tiny models run fastest, and least disturbed, on one thread."""
    yield
