"""``--torch-compile``: a run through the compiled joint pass learns what an eager run learns.

Most tests compile with the ``aot_eager`` backend, which traces the network and runs it
through AOTAutograd as inductor does (the backward that per-task strategies call once per
stage included), without generating C++; one real inductor run goes through the command line.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.diagnostics import NestError
from nestdsl.train import train
from nestdsl.train.batch_step import mode_of
from nestdsl.train.compiled import check_available, compiled_text
from nestdsl.train.config import RUNTIME_FIELDS, make_config
from nestdsl.train.runs import FINAL

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "specs" / "digits_width.nest")


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[torch.nn.Module]]:
    """``torch.compile`` with the ``aot_eager`` backend; records what it was asked to compile."""
    asked: list[torch.nn.Module] = []
    original: Callable[..., torch.nn.Module] = torch.compile  # type: ignore[assignment]

    def compile_(model: torch.nn.Module, **kwargs: object) -> torch.nn.Module:
        asked.append(model)
        return original(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_)
    yield asked
    torch._dynamo.reset()


def run(
    strategy: str, compiled: bool, **options: object
) -> tuple[list[float], dict[str, torch.Tensor]]:
    config = make_config(
        data="synthetic:96",
        batch_size=32,
        epochs=1,
        strategy=strategy,
        torch_compile=compiled,
        **options,
    )
    result = train(SPEC, config, progress=False)
    losses = [loss for loss in result.history[0].train_loss if loss is not None]
    return losses + [s.loss for s in result.stages], result.net.state_dict()


@pytest.mark.parametrize(
    ("strategy", "options"),
    [("sgd", {}), ("osgd", {"task_graph": "joint"}), ("sgd-norm", {"task_graph": "joint"})],
)
def test_a_compiled_run_learns_what_an_eager_run_learns(
    aot_eager: list[torch.nn.Module], strategy: str, options: dict[str, object]
) -> None:
    eager_losses, eager_state = run(strategy, False, **options)
    assert not aot_eager
    compiled_losses, compiled_state = run(strategy, True, **options)
    assert len(aot_eager) == 1
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert compiled_state.keys() == eager_state.keys()  # no `_orig_mod.` prefix
    for key, value in eager_state.items():
        torch.testing.assert_close(compiled_state[key], value, rtol=1e-3, atol=1e-4)


def test_a_run_resumes_with_torch_compile_switched_on(
    aot_eager: list[torch.nn.Module], tmp_path: Path
) -> None:
    assert "torch_compile" in RUNTIME_FIELDS
    config = make_config(data="synthetic:64", batch_size=32, epochs=2, strategy="sgd")
    train(SPEC, config, tmp_path / "run", progress=False, until_epoch=1)
    resumed = train(
        SPEC,
        config.model_copy(update={"torch_compile": True}),
        tmp_path / "run",
        progress=False,
        resume=True,
    )
    assert resumed.finished and len(aot_eager) == 1


@pytest.mark.parametrize(
    ("strategy", "device", "shown"),
    [
        ("sgd", "cpu", "for training steps and evaluation"),
        ("osgd", "cuda", "for training steps and evaluation"),
        ("osgd", "cpu", "evaluation only (the anytime graph runs eagerly"),
        ("greedy", "cpu", "evaluation only (greedy trains stage by stage"),
    ],
)
def test_the_banner_says_what_is_compiled(strategy: str, device: str, shown: str) -> None:
    config = make_config(strategy=strategy, torch_compile=True)
    assert shown in (compiled_text(config, mode_of(config, device)) or "")
    assert compiled_text(make_config(strategy=strategy), mode_of(config, device)) is None


def test_a_missing_cpp_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(NestError, match=r"T019.*`no-such-compiler-here` was not found"):
        check_available(make_config(torch_compile=True), torch.device("cpu"))
    result = CliRunner().invoke(app, ["train", SPEC, "--torch-compile", "--dry-run"])
    assert result.exit_code == 1
    assert "error[T019]" in result.output and "Traceback" not in result.output


def test_a_dry_run_shows_the_compiled_pass() -> None:
    result = CliRunner().invoke(
        app, ["train", SPEC, "--torch-compile", "--strategy", "sgd", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "compiled  joint pass, for training steps and evaluation" in result.output


def test_the_command_line_trains_through_inductor(tmp_path: Path) -> None:
    """A real compile (C++ generated and built), about a minute on a 2-core machine; the test
    command's set-up (scripts/setup.sh) installs g++."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nestdsl.cli",
            "train",
            SPEC,
            "--torch-compile",
            "--strategy",
            "sgd",
            "--data",
            "synthetic:64",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compiled  joint pass" in done.stderr  # the banner, beside the progress bars
    assert (tmp_path / "run" / FINAL).is_file()
