"""Shared test fixtures: golden-file comparison with an update flag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text with a golden file under tests/golden/ (or rewrite it with --update-golden)."""
    update = request.config.getoption("--update-golden")

    def check(relative: str, actual: str) -> None:
        path = GOLDEN / relative
        if update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            if not update:
                pytest.fail(f"golden file {relative} was missing; written, re-run to compare")
            return
        assert actual == path.read_text(encoding="utf-8"), f"output differs from golden {relative}"

    return check


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Tiny models: intra-op threads only add contention (10x slower on a busy 2-core
    machine), and one thread keeps results bit-for-bit reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
