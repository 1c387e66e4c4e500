"""The built wheel works outside the checkout: grammar shipped as package data, CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (path,) = out.glob("nestdsl-*.whl")
    return path


def test_wheel_ships_every_package_and_the_grammar(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nestdsl/grammar/nest.lark" in names
    assert "nestdsl/prelude.nest" in names  # the built-in kinds, written in the language
    for package in ("cli", "compiler", "data", "draw", "ir", "optim", "parse", "train"):
        assert f"nestdsl/{package}/__init__.py" in names, package
    sources = {p.relative_to(ROOT / "nestdsl").as_posix() for p in (ROOT / "nestdsl").rglob("*.py")}
    assert {f"nestdsl/{s}" for s in sources} <= names


def test_installed_wheel_compiles_a_spec_from_elsewhere(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    spec = tmp_path / "net.nest"
    spec.write_text((ROOT / "specs" / "digits_width.nest").read_text())
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import sys, nestdsl; from nestdsl.cli.app import main; print(nestdsl.__file__); main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "compile", str(spec)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))
    assert "w4" in result.stdout
