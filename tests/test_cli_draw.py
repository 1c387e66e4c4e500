"""`nestdsl draw`: formats by suffix, --expand, errors as diagnostics (runner + subprocess)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import graphviz
import pytest
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.draw import to_dot
from nestdsl.ir import build_ir
from nestdsl.load import load

TINY = Path(__file__).resolve().parent / "golden" / "cli" / "tiny.nest"
runner = CliRunner()


def test_dot_output(tmp_path: Path) -> None:
    out = tmp_path / "arch.dot"
    result = runner.invoke(app, ["draw", str(TINY), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.stderr
    assert out.read_text(encoding="utf-8") == to_dot(build_ir(load(TINY)))


def test_expand(tmp_path: Path) -> None:
    out = tmp_path / "arch.gv"
    assert runner.invoke(app, ["draw", str(TINY), "-o", str(out), "--expand"]).exit_code == 0
    assert out.read_text(encoding="utf-8") == to_dot(build_ir(load(TINY)), collapse=False)
    assert "s1.2.conv1" in out.read_text(encoding="utf-8")


def test_unknown_suffix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["draw", str(TINY), "-o", str(tmp_path / "arch.jpg")])
    assert result.exit_code == 1
    assert "`.svg`" in result.stderr and "Traceback" not in result.output


def test_missing_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> bytes:
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", missing)
    result = runner.invoke(app, ["draw", str(TINY), "-o", str(tmp_path / "arch.svg")])
    assert result.exit_code == 1
    assert "apt-get install graphviz" in result.stderr and "-o FILE.dot" in result.stderr


def test_usage_errors(tmp_path: Path) -> None:
    assert runner.invoke(app, ["draw", str(TINY)]).exit_code == 2  # -o is required
    assert runner.invoke(app, ["draw", str(tmp_path / "no.nest"), "-o", "x.svg"]).exit_code == 2


def test_bad_spec(tmp_path: Path) -> None:
    spec = tmp_path / "bad.nest"
    spec.write_text("nest 1\ninput shape=(3, 8, 8)\nstem conv channels=8 kernal=3\n")
    result = runner.invoke(app, ["draw", str(spec), "-o", str(tmp_path / "a.dot")])
    assert result.exit_code == 1
    assert f"{spec}:3:" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "a.dot").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
def test_subprocess_svg(tmp_path: Path) -> None:
    local = Path(sys.executable).parent / "nestdsl"
    exe = str(local) if local.exists() else shutil.which("nestdsl")
    if exe is None:
        pytest.skip("the `nestdsl` entry point is not installed")
    out = tmp_path / "arch.svg"
    done = subprocess.run(
        [exe, "draw", str(TINY), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().lstrip().startswith(b"<?xml") and b"<svg" in out.read_bytes()


@pytest.mark.parametrize(
    ("output", "message"),
    [("nodir/arch.svg", "the folder `nodir` does not exist"), ("/sys/arch.svg", "/sys/arch.svg")],
)
def test_unwritable_output_is_a_diagnostic(output, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["draw", str(TINY), "-o", output])
    assert result.exit_code == 1, result.output
    assert "error[E905]" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output
