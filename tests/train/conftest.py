"""Training tests run tiny models: one intra-op thread is faster for them, and far faster when
other test processes share the cores (OpenMP threads spin against each other)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
