"""Training tests run tiny models: one intra-op thread is faster for them, and far faster when
other test processes share the cores (OpenMP threads spin against each other)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs with the shared `single_thread` fixture (tests/conftest.py)."""
