"""The README's examples stay true: its spec parses and its compile table is what we print."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import nestdsl
from nestdsl.cli.app import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_spec_is_the_shipped_digits_spec() -> None:
    text = README.split("## A spec", 1)[1].split("```", 2)[1].strip("\n")
    spec = nestdsl.loads(text, "readme.nest")
    shipped = nestdsl.load(Path(__file__).resolve().parent.parent / "specs" / "digits_width.nest")
    assert nestdsl.stage_costs(nestdsl.build_ir(spec)) == nestdsl.stage_costs(
        nestdsl.build_ir(shipped)
    )


def test_readme_compile_table_matches_the_cli() -> None:
    result = CliRunner().invoke(app, ["compile", "specs/digits_width.nest"])
    assert result.exit_code == 0
    for line in result.stdout.splitlines()[:7]:
        assert line.rstrip() in README
