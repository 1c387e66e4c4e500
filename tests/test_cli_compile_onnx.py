"""`nestdsl compile --emit onnx / onnx-stages`: files, notices, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_specs import spec_text
from typer.testing import CliRunner

from nestdsl.cli.app import app

runner = CliRunner()


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """A tiny 3-stage width-nested spec (w1 w2 w4): quick to export."""
    path = tmp_path / "tiny.nest"
    path.write_text(spec_text("width"), encoding="utf-8")
    return path


def test_emit_onnx_writes_a_checked_file(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "d2.onnx"
    result = runner.invoke(app, ["compile", str(spec), "-e", "onnx", "-k", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    assert f"wrote {out} (stage 2, w2); onnxruntime matches PyTorch" in result.stderr


def test_emit_onnx_stages_writes_programs_and_a_manifest(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "stages"
    result = runner.invoke(app, ["compile", str(spec), "-e", "onnx-stages", "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["label"] for s in manifest["stages"]] == ["w1", "w2", "w4"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "stage1.onnx",
        "stage2.onnx",
        "stage3.onnx",
    ]
    assert "3 stage programs; onnxruntime running the chain matches" in result.stderr


def test_usage_errors(spec: Path, tmp_path: Path) -> None:
    cases = [
        (["-e", "onnx"], "give -o FILE.onnx"),
        (["-e", "onnx-stages"], "writes a folder; give -o DIR"),
        (["-e", "onnx-stages", "-o", str(tmp_path / "d"), "-k", "1"], "--stage only applies"),
        (["-e", "onnx", "-o", str(tmp_path / "d.onnx"), "-k", "4"], "choose 1..3"),
        (["-e", "json", "-w", str(spec)], "--weights only applies"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["compile", str(spec), *args])
        assert result.exit_code == 2, args
        assert message in " ".join(result.output.split()), (args, result.output)
