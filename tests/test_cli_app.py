"""The application shell: version, help, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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


COMMANDS = ("compile", "train", "draw", "strategies")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_at_80_columns_with_examples(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    assert "Example" in result.output and f"nestdsl {command}" in result.output
    assert "<bool>" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_train_help_has_a_flag_and_default_for_every_config_field() -> None:
    from nestdsl.train.config import TrainConfig

    text = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=80).output.split())
    for name, field in TrainConfig.model_fields.items():
        assert f"--{name.replace('_', '-')}" in text
        assert field.description, f"TrainConfig.{name} needs a description (it is the help)"
        if field.default is not None and not isinstance(field.default, bool):
            assert f"[default: {field.default}]" in text, name
    for flag in ("--dry-run", "--json", "--out", "--resume", "--nproc", "--quiet"):
        assert flag in text


def test_strategies_lists_every_strategy() -> None:
    from nestdsl.optim import BASE_STRATEGIES, MTL_STRATEGIES

    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0
    assert set(BASE_STRATEGIES + MTL_STRATEGIES) <= set(result.output.split())


def test_shell_completion_is_offered() -> None:
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


SPEC = str(Path(__file__).resolve().parent.parent / "specs" / "digits_width.nest")


@pytest.mark.parametrize(
    "args", [["--help"], ["compile", "--help"], ["draw", "--help"], ["compile", SPEC]]
)
def test_help_does_not_import_torch(args: list[str]) -> None:
    """What keeps `nestdsl --help` fast: PyTorch is imported only by commands that run it."""
    code = (
        "import sys\nfrom nestdsl.cli.app import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "False"


def test_draw_formats_match_the_renderers() -> None:
    from nestdsl.cli.draw_cmd import FORMATS
    from nestdsl.draw import RENDERERS

    assert set(FORMATS) == set(RENDERERS)
