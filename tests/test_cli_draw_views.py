"""`nestdsl draw` views: --stage, --stripes/--no-stripes and --show-pruned, as the library."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.draw import to_dot
from nestdsl.ir import build_ir
from nestdsl.load import load

SPECS = Path(__file__).resolve().parent.parent / "specs"
runner = CliRunner()


def draw(tmp_path: Path, spec: str, *flags: str) -> tuple[int, str, str]:
    out = tmp_path / "arch.dot"
    result = runner.invoke(app, ["draw", str(SPECS / spec), "-o", str(out), *flags])
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    return result.exit_code, text, result.stderr


def test_stage_highlight(tmp_path: Path) -> None:
    code, text, _ = draw(tmp_path, "sparse_resnet98_eann.nest", "--stage", "2")
    assert code == 0
    assert text == to_dot(build_ir(load(SPECS / "sparse_resnet98_eann.nest")), stage=2)
    assert "D2 (d2) highlighted" in text


def test_stage_out_of_range(tmp_path: Path) -> None:
    code, text, stderr = draw(tmp_path, "digits_width.nest", "--stage", "9")
    assert code == 1 and not text
    assert "E906" in stderr and "stages 1 to 3" in stderr and "Traceback" not in stderr


def test_stripes_and_pruned(tmp_path: Path) -> None:
    ir = build_ir(load(SPECS / "digits_width_depth.nest"))
    flags = ("--stripes", "--show-pruned", "--expand")
    code, text, _ = draw(tmp_path, "digits_width_depth.nest", *flags)
    assert code == 0 and text == to_dot(ir, stripes=True, show_pruned=True, collapse=False)
    assert ':"u0":e -> ' in text and "pruned back-edge" in text


def test_automatic_stripes_can_be_turned_off(tmp_path: Path) -> None:
    _, auto, _ = draw(tmp_path, "digits_width.nest")
    _, blocks, _ = draw(tmp_path, "digits_width.nest", "--no-stripes")
    assert ':"u0":e -> ' in auto and ':"u0":e -> ' not in blocks


def test_stripes_pick_rows_for_depth(tmp_path: Path) -> None:
    code, text, _ = draw(tmp_path, "digits_depth.nest", "--stripes")
    assert code == 0 and text == to_dot(build_ir(load(SPECS / "digits_depth.nest")), stripes=True)
    assert "level 1 · d1" in text and "level 3 · d4" in text and ':"u0":e -> ' not in text
