"""Fixtures for the optim tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs with the shared `single_thread` fixture (tests/conftest.py)."""
