"""Every shell and Python block in README.md and docs/*.md runs, so the docs cannot drift.

Blocks are taken by their info string:

- ``console``: ``$ `` lines are commands, the lines up to the next ``$`` their output. A
  `nestdsl` command runs through the real application (argv as a shell would split it); every
  shown output line (``...`` lines skipped) must be among the lines it prints (stdout and
  stderr), and it must fail exactly when the doc shows an ``error[...]``.
- ``bash`` / ``sh``: every line is a command that must succeed (output not compared).
- ``python``: executed.
- ``<!-- docs-test setup NAME [ARG] -->`` before a block prepares what it assumes, from
  :data:`SETUPS`: the variables a Python fragment uses (a network, a loader, losses), a
  finished run in folder ARG, CIFAR files.
- ``<!-- docs-test file NAME`` … ``-->`` writes a file the next commands use (e.g. a broken spec).
- ``<!-- docs-test skip: REASON -->`` before a block: its output needs a machine this is not
  (no Graphviz, a broken install, a GPU); the reason is the record of why it is not run.

Each document runs in its own scratch folder holding the repository's specs. The check mode
keeps it quick without changing what a command means: a training run keeps its options but
trains one epoch (greedy: up to 3, one per stage of the shipped digits specs), and the bundled
digits become 64 synthetic images of the same shape.
Commands that cannot run on a test machine are listed in :data:`NOT_RUN` with the reason.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from nestdsl.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
FILE = re.compile(r"<!-- docs-test file (\S+)\n(.*?)-->", re.S)
SETUP = re.compile(r"<!-- docs-test setup (\w+)(?: (\S+))? -->")
SKIP = re.compile(r"<!-- docs-test skip: ([^>]+?) -->")
SHELL = {"console", "bash", "sh"}

NOT_RUN: dict[str, str] = {
    "pip install": "installs packages",
    "torchrun": "starts a multi-process job",
    "bash scripts/": "the scripts install tools and run the whole suite",
    ".venv/bin/python bench/": "benchmarks take minutes",
    "python experiments/": "experiments take minutes",
    "/data/": "a data set that is not on this machine",
    "/path/to/": "a data set that is not on this machine",
    "--device cuda": "what it prints depends on the GPUs present",
    "--amp bf16": "bf16 support depends on the machine",
    "--nproc 2": "spawns worker processes (tests/train/test_train_distributed.py runs them)",
}
"""Command fragments not run here, and why."""

CHECK_EPOCHS = 3
CHECK_DATA = "synthetic:64"


@dataclass(frozen=True)
class Block:
    """One fenced block: its info string, text, first line and the prose just before it."""

    kind: str
    text: str
    line: int
    before: str


def blocks(document: Path) -> list[Block]:
    source = document.read_text(encoding="utf-8")
    found, end = [], 0
    for match in FENCE.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2), line, source[end : match.start()]))
        end = match.end()
    return found


def _python_setup_nested(workspace: Path, _: str) -> dict[str, Any]:
    """A small nested network, its data, losses and per-stage parameters."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import nestdsl

    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(workspace / "specs" / "digits_width.nest"))
    x, y = torch.randn(16, *net.input_shape), torch.randint(0, 10, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    losses = [F.cross_entropy(out, y) for out in net.anytime(x)]
    stage_params = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
    return {
        "net": net,
        "loader": loader,
        "val_loader": loader,
        "epochs": 1,
        "losses": losses,
        "stage_params": stage_params,
        "grads": torch.randn(net.num_stages, 10),
    }


def _python_setup_cifar(workspace: Path, _: str) -> dict[str, Any]:
    """Tiny CIFAR-10 batch files at ~/data (HOME is the scratch folder)."""
    from cifar_files import make_cifar10

    data = workspace / "data"
    for name in make_cifar10(workspace / "cifar").iterdir():
        data.mkdir(exist_ok=True)
        name.rename(data / name.name)
    return {}


def _setup_run(workspace: Path, folder: str) -> dict[str, Any]:
    """A finished run of specs/digits_width.nest in ``folder`` (trained in check mode)."""
    args = ["train", "specs/digits_width.nest", "--out", folder, "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {}


SETUPS: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "nested": _python_setup_nested,
    "cifar": _python_setup_cifar,
    "run": _setup_run,
}


def _capped(train: Callable[..., Any]) -> Callable[..., Any]:
    """``train`` with the check mode's epochs and data (see the module docstring)."""

    def run(source: Any, config: Any = None, *args: Any, **kwargs: Any) -> Any:
        from nestdsl.train.config import TrainConfig

        config = config or TrainConfig()
        data = CHECK_DATA if config.data == "digits" else config.data
        cap = CHECK_EPOCHS if config.strategy == "greedy" else 1  # greedy: one per stage
        update = {"epochs": min(config.epochs, cap), "data": data}
        return train(source, config.model_copy(update=update), *args, **kwargs)

    return run


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    engine = importlib.import_module("nestdsl.train.engine")
    launch = importlib.import_module("nestdsl.train.launch")  # the module, not the function
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(engine, "train", _capped(engine.train))
    monkeypatch.setattr(launch, "train", _capped(launch.train))
    torch.set_num_threads(1)
    yield tmp_path


def _reason_not_run(command: str) -> str | None:
    return next((reason for fragment, reason in NOT_RUN.items() if fragment in command), None)


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, shown output lines) of a shell block."""
    if block.kind != "console":
        lines = [line for line in block.text.splitlines() if line.strip()]
        return [(line, []) for line in lines]
    commands: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def _run(command: str) -> tuple[int, str]:
    argv = shlex.split(command, comments=True)
    if argv[0] == "nestdsl":
        result = CliRunner().invoke(app, argv[1:])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout + result.stderr
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=os.environ)
    return done.returncode, done.stdout + done.stderr


def _check_output(where: str, command: str, shown: list[str], code: int, printed: str) -> None:
    expected = [line.rstrip() for line in shown if line.strip() and "..." not in line]
    fails = any(line.startswith("error[") for line in expected)
    assert (code != 0) == fails, f"{where}: `{command}` exited {code}:\n{printed}"
    actual = {line.rstrip() for line in printed.splitlines()}
    for line in expected:
        assert line in actual, (
            f"{where}: `{command}` did not print\n  {line}\nit printed:\n{printed}"
        )


def _prepare(block: Block, workspace: Path) -> dict[str, Any]:
    """Write the block's files and run its setups; return the variables they define."""
    for name, text in FILE.findall(block.before):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text, encoding="utf-8")
    namespace: dict[str, Any] = {}
    for name, argument in SETUP.findall(block.before):
        namespace.update(SETUPS[name](workspace, argument))
    return namespace


def _run_shell(document: Path, block: Block) -> None:
    for command, shown in _commands(block):
        where = f"{document.name}:{block.line}"
        if _reason_not_run(command) is not None:
            continue
        code, printed = _run(command)
        _check_output(where, command, shown, code, printed)


def _run_python(document: Path, block: Block, namespace: dict[str, Any]) -> None:
    code = compile(block.text, f"{document.name}:{block.line}", "exec")
    exec(code, namespace)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_document_blocks_run(document: Path, workspace: Path) -> None:
    for block in blocks(document):
        if SKIP.search(block.before):
            continue
        namespace = _prepare(block, workspace)
        if block.kind in SHELL:
            _run_shell(document, block)
        elif block.kind == "python":
            _run_python(document, block, {"__name__": "__docs__", **namespace})


def test_every_block_has_a_known_kind() -> None:
    """Untagged blocks are shown text (spec excerpts, output); anything else must be known."""
    known = SHELL | {"python", "json", "text", ""}
    for document in DOCUMENTS:
        for block in blocks(document):
            assert block.kind in known, f"{document.name}:{block.line}: ```{block.kind}"


def test_module_doctests(workspace: Path) -> None:
    """The examples in docstrings run (``python -m doctest`` on every module that has one)."""
    import doctest

    modules = sorted(
        path
        for path in (ROOT / "nestdsl").rglob("*.py")
        if ">>> " in path.read_text(encoding="utf-8")
    )
    assert modules
    for path in modules:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0, f"doctest failed in {name}"


def test_json_blocks_parse() -> None:
    import json

    for document in DOCUMENTS:
        for block in blocks(document):
            if block.kind == "json":
                json.loads(block.text)
