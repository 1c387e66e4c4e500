"""Loading files and text; the golden diagnostics of every bad input in tests/golden."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nestdsl.diagnostics import NestError
from nestdsl.load import load, loads

GOLDEN_CASES = sorted((Path(__file__).parent / "golden" / "diagnostics").glob("*.nest"))

GOOD = """\
nest 1
input shape=(1, 16, 16)
stem conv channels=16
block s1 basic count=2 channels=16
head classes=10
schedule width * 2
"""


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "small.nest"
    path.write_text(GOOD, encoding="utf-8")
    spec = load(path)
    assert spec.name == "small"
    assert spec.path == str(path)
    assert load(str(path)).blocks == spec.blocks


def test_loads_runs_checks() -> None:
    with pytest.raises(NestError) as info:
        loads(GOOD.replace("channels=16\nhead", "channels=18\nhead"), "x.nest")
    assert [d.code for d in info.value.diagnostics] == ["E301"]
    assert "x.nest:4:" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NestError) as info:
        load(tmp_path / "absent.nest")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E006"
    assert "no such file" in diagnostic.message
    assert "Traceback" not in str(info.value)


def test_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(NestError, match="E006"):
        load(tmp_path)
    binary = tmp_path / "b.nest"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(NestError, match="not UTF-8"):
        load(binary)


def test_golden_cases_exist() -> None:
    assert len(GOLDEN_CASES) >= 20


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda p: p.stem)
def test_golden_diagnostics(case: Path, golden) -> None:
    with pytest.raises(NestError) as info:
        loads(case.read_text(encoding="utf-8"), case.name)
    golden(f"diagnostics/{case.stem}.txt", info.value.render() + "\n")


def test_every_error_code_is_documented() -> None:
    """Every code raised in nestdsl/ or cli/ is explained in docs/errors.md, and nothing else."""
    root = Path(__file__).resolve().parent.parent
    sources = sorted(
        path for folder in ("nestdsl", "cli") for path in (root / folder).rglob("*.py")
    )
    used = {
        code
        for path in sources
        for code in re.findall(r'"([EDT]\d{3})"', path.read_text(encoding="utf-8"))
    }
    docs = (root / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = re.findall(r"^### ([EDT]\d{3}):", docs, re.M)
    assert len(documented) == len(set(documented)), "a code is documented twice"
    assert {"E001", "E901", "D001", "T001"} <= used
    assert used == set(documented), (
        f"undocumented: {sorted(used - set(documented))}, "
        f"documented but never raised: {sorted(set(documented) - used)}"
    )
