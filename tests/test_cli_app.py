"""The application shell: version, help, usage errors."""

from __future__ import annotations

from typer.testing import CliRunner

import nestdsl
from nestdsl.cli.app import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"nestdsl {nestdsl.__version__}"


def test_no_arguments_shows_help_with_every_command() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    for command in ("compile", "train", "draw"):
        assert command in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["compiel"])
    assert result.exit_code == 2
