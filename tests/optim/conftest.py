"""Fixtures for the optim tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """The toy problems are tiny: intra-op threads only add contention (10x slower on a busy
    2-core machine), and one thread keeps results bit-for-bit reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
