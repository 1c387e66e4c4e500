"""Bad input at the CLI: each a clear message and exit code 1 or 2, never a traceback or a hang.

Spec files that are missing, empty, binary, Latin-1, huge or deeply nested; absurd sizes; data
sources that do not exist or hold the wrong thing; corrupted run directories. Through Typer's
runner (all cases) and the real entry point in a subprocess (with a timeout: never a hang).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nestdsl
from nestdsl.cli.app import app
from nestdsl.diagnostics import NestError

TINY = Path(__file__).resolve().parent / "golden" / "cli" / "tiny.nest"
runner = CliRunner()

SPEC_FILES: dict[str, Callable[[Path], None]] = {
    "empty": lambda p: p.write_text(""),
    "binary": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "latin1": lambda p: p.write_bytes("nest 1\nnetwork café\n".encode("latin-1")),
    "huge": lambda p: p.write_text("nest 1\n" + "# comment\n" * 100_000),
    "deep": lambda p: p.write_text("nest 1\nparam w = " + "(" * 5000 + "1" + ")" * 5000 + "\n"),
    "long_sum": lambda p: p.write_text("nest 1\nparam w = " + "+".join(["1"] * 5000) + "\n"),
    "absurd": lambda p: p.write_text(
        TINY.read_text().replace("channels=8", "channels=999999999", 1)
    ),
}
"""How each bad spec file is written; every one must be refused with exit code 1."""


def _spec(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.nest"
    SPEC_FILES[kind](path)
    return path


def _clean(code: int, output: str, expected: int) -> None:
    assert code == expected, output
    assert "Traceback" not in output
    assert "error" in output.lower()


@pytest.mark.parametrize("kind", sorted(SPEC_FILES))
@pytest.mark.parametrize("command", ["compile", "draw"])
def test_bad_spec_files(tmp_path: Path, kind: str, command: str) -> None:
    extra = ["-o", str(tmp_path / "out.dot")] if command == "draw" else []
    result = runner.invoke(app, [command, str(_spec(tmp_path, kind)), *extra])
    _clean(result.exit_code, result.output, 1)


def test_missing_spec_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compile", str(tmp_path / "absent.nest")])
    _clean(result.exit_code, result.output, 2)


def _entry() -> list[str]:
    exe = shutil.which("nestdsl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "nestdsl.cli"]


@pytest.mark.parametrize("kind", ["binary", "huge", "deep"])
def test_bad_spec_files_through_the_real_entry_point(tmp_path: Path, kind: str) -> None:
    done = subprocess.run(
        [*_entry(), "compile", str(_spec(tmp_path, kind))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _clean(done.returncode, done.stderr, 1)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent/data", "unknown data source"),
        ("cifar10:{tmp}/absent", "does not exist"),
        ("cifar10:{tmp}/wrong", "batch files missing"),
        ("cifar10:{tmp}/garbage", "is not a CIFAR batch file"),
        ("imagefolder:{tmp}/wrong", "has no `train` sub-folder"),
        ("synthetic:99999999999999", "out of range"),
    ],
)
def test_bad_data_sources(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "notes.txt").write_text("not a dataset")
    (tmp_path / "garbage").mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (tmp_path / "garbage" / name).write_bytes(b"garbage\n")
    args = ["train", str(TINY), "--data", source.format(tmp=tmp_path), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    _clean(result.exit_code, result.output, 1)
    assert message in result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run of the tiny spec on synthetic data, copied before each corruption."""
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", str(TINY), "--data", "synthetic:64", "--epochs", "1", "--batch-size", "32"]
    result = runner.invoke(app, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def _corrupt(run: Path, tmp_path: Path, name: str, how: str) -> Path:
    copy = tmp_path / "corrupt"
    shutil.copytree(run, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 2] if how == "truncate" else b"\x00" * 64)
    return copy


@pytest.mark.parametrize("how", ["truncate", "zero"])
@pytest.mark.parametrize("name", ["checkpoint.pt", "config.json"])
def test_resume_from_a_corrupted_run(finished_run: Path, tmp_path: Path, name: str, how: str):
    copy = _corrupt(finished_run, tmp_path, name, how)
    result = runner.invoke(app, ["train", "--resume", str(copy)])
    _clean(result.exit_code, result.output, 1)
    assert "cannot read" in result.output


@pytest.mark.parametrize("how", ["truncate", "zero"])
@pytest.mark.parametrize("name", ["final.pt", "config.json", "spec.nest"])
def test_load_run_of_a_corrupted_run(finished_run: Path, tmp_path: Path, name: str, how: str):
    copy = _corrupt(finished_run, tmp_path, name, how)
    with pytest.raises(NestError) as caught:
        nestdsl.load_run(copy)
    assert "Traceback" not in caught.value.render()
