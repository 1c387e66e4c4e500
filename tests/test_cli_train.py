"""`nestdsl train`: Typer CliRunner for options and errors, one real subprocess end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from nestdsl.cli import train_cmd

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_toy import write_tiny_spec

FAST = ["--data", "synthetic:128", "--epochs", "2", "--batch-size", "32", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def app() -> typer.Typer:
    """The real application; just the train command when other commands fail to import."""
    try:
        from nestdsl.cli.app import app as full
    except ImportError:
        only = typer.Typer()

        @only.callback()
        def root() -> None:
            """nestdsl"""

        train_cmd.register(only)
        return only
    return full


@pytest.fixture
def spec(tmp_path: Path) -> str:
    return write_tiny_spec(tmp_path)


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_train_prints_a_per_stage_table(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(app, spec, *FAST, "--strategy", "osgd", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = result.stdout
    for text in ("stage", "label", "top-1", "top-5", "params", "w1", "w2", "w4", "670"):
        assert text in table
    assert f"run dir: {out}" in table
    results = json.loads((out / "results.json").read_text())
    assert [s["label"] for s in results["stages"]] == ["w1", "w2", "w4"]
    stored = json.loads((out / "config.json").read_text())
    assert stored["config"]["data"] == "synthetic:128"
    assert stored["spec"]["text"] == Path(spec).read_text()


def test_all_options_reach_the_config(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(
        app,
        spec,
        *FAST,
        "--strategy",
        "osgd-norm",
        "--priority",
        "3,1,2",
        "--importances",
        "1,1,2",
        "--norm-constant",
        "0.25",
        "--optimizer",
        "sgd",
        "--nesterov",
        "--lr",
        "0.02",
        "--lr-final",
        "0.001",
        "--schedule",
        "step",
        "--milestones",
        "1",
        "--seed",
        "3",
        "--amp",
        "off",
        "--no-channels-last",
        "--workers",
        "0",
        "--checkpoint-every",
        "2",
        "--log",
        "jsonl",
        "--no-augment",
        "--weight-decay",
        "0",
        "--quiet",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["priority"] == [3, 1, 2] and config["importances"] == [1.0, 1.0, 2.0]
    assert config["schedule"] == "step" and config["milestones"] == [1]
    assert config["nesterov"] is True and config["seed"] == 3 and config["augment"] is False
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.02, 0.002])


def test_standalone_option(app, spec, tmp_path) -> None:
    result = run(app, spec, *FAST, "--standalone", "2", "--out", str(tmp_path / "r"), "-q")
    assert result.exit_code == 0, result.output
    assert "w2" in result.stdout and "w4" not in result.stdout


def test_resume_without_spec_uses_the_runs_copy(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    first = run(app, spec, *FAST, "--out", str(out), "-q")
    assert first.exit_code == 0
    (out / "final.pt").unlink()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epochs_done"] == 2
    again = run(app, "--resume", str(out), "-q")
    assert again.exit_code == 0, again.output
    assert (out / "final.pt").exists()
    changed = run(app, "--resume", str(out), "--lr", "0.5")
    assert changed.exit_code == 1
    assert "T009" in changed.stderr and "lr" in changed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "osdg"], "did you mean `osgd`?"),
        (["--priority", "1,1,2"], "not a permutation of the stage numbers 1..3"),
        (["--priority", "a,b"], "--priority expects comma-separated integers"),
        pytest.param(
            ["--device", "cuda"],
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
        (["--data", "mnist"], "unknown data source `mnist`"),
        (["--schedule", "linear"], "invalid training option `schedule`"),
        (["--standalone", "9"], "only 3 stages"),
        (["--nproc", "2", "--batch-size", "33"], "does not split evenly"),
    ],
)
def test_user_errors_exit_1_with_a_diagnostic(app, spec, tmp_path, args, message) -> None:
    result = run(app, spec, *FAST, *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_resume_directory_without_checkpoint(app, tmp_path) -> None:
    result = run(app, "--resume", str(tmp_path))
    assert result.exit_code == 1
    assert "no checkpoint.pt to resume from" in result.stderr


def test_existing_run_is_not_overwritten(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    assert run(app, spec, *FAST, "--out", str(out), "-q").exit_code == 0
    again = run(app, spec, *FAST, "--out", str(out), "-q")
    assert again.exit_code == 1 and "already holds a training run" in again.stderr


def test_missing_spec_file_is_a_usage_error(app, tmp_path) -> None:
    result = run(app, str(tmp_path / "nope.nest"))
    assert result.exit_code == 2


def test_oracle_trains_an_independent_network_and_reports_both_sizes(app, spec, tmp_path) -> None:
    out = tmp_path / "oracle"
    result = run(app, spec, *FAST, "--oracle", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "oracle of stage 2 (w2)" in result.stdout and "nested D_2" in result.stdout
    results = json.loads((out / "results.json").read_text())
    oracle = results["oracle"]
    assert oracle["stage"] == 2 and oracle["params"] > oracle["nested_params"]
    assert [s["params"] for s in results["stages"]] == [oracle["params"]]
    assert [(s["stage"], s["label"]) for s in results["test"]] == [(2, "w2")]
    assert len(results["test"]) == 1 and results["data_split"]["test"] == 32


def test_greedy_reports_the_total_epochs_and_the_split(app, spec, tmp_path) -> None:
    out = tmp_path / "greedy"
    result = run(app, spec, *FAST, "--strategy", "greedy", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "epochs trained: 6" in result.stdout  # 3 stages x 2 epochs
    assert "128 train / 32 validation / 32 test" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["data_split"]["train"] == 128 and "test" in config["data_split"]["rule"]


def test_banner_and_labelled_epoch_lines(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(app, spec, *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    for line in (
        "stages    3: w1 w2 w4",
        "data      synthetic:128: 128 training",
        f"run dir   {out}",
    ):
        assert line in result.stderr
    assert result.stderr.index("stages") < result.stderr.index("epoch 1/2")
    epoch = next(line for line in result.stderr.splitlines() if line.startswith("epoch 2/2"))
    assert all(f"{label} loss" in epoch for label in ("w1", "w2", "w4"))
    assert "anytime params" in result.stdout


@pytest.mark.parametrize("kind", ["file", "folder with files", "unwritable"])
def test_unusable_out_is_refused_before_anything_is_made(app, spec, tmp_path, kind) -> None:
    target = {"file": tmp_path / "afile", "folder with files": tmp_path / "mine"}.get(
        kind, Path("/proc/nope")
    )
    if kind == "file":
        target.write_text("keep me")
    elif kind == "folder with files":
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
    before = sorted(tmp_path.rglob("*"))
    result = run(app, spec, *FAST, "--out", str(target))
    assert result.exit_code == 1, result.output
    assert "error[T015]" in result.stderr and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("existing", [False, True])
def test_failed_start_leaves_nothing_behind(app, spec, tmp_path, existing) -> None:
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    result = run(app, spec, *FAST, "--data", "synthetic:64:5", "--out", str(out))
    assert result.exit_code == 1 and "T011" in result.stderr  # found after the run dir is made
    assert (list(out.iterdir()) == []) if existing else not out.exists()


def test_dry_run_checks_and_writes_nothing(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(app, spec, *FAST, "--out", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "data      synthetic:128: 128 training" in result.stdout
    assert "nothing trained" in result.stdout and not out.exists()
    bad = run(app, spec, *FAST, "--data", "mnist", "--dry-run")
    assert bad.exit_code == 1 and "unknown data source" in bad.stderr
    unfit = run(app, spec, *FAST, "--data", "synthetic:64:5", "--dry-run")
    assert unfit.exit_code == 1 and "T011" in unfit.stderr


def test_json_results_on_stdout(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(app, spec, *FAST, "--out", str(out), "--json", "-q")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [s["label"] for s in document["stages"]] == ["w1", "w2", "w4"]
    assert document == json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--milestones", "1"], "--milestones"),
        (["--strategy", "sgd", "--priority", "2,1,3"], "--priority"),
        (["--optimizer", "adamw", "--momentum", "0.5"], "--momentum"),
        (["--standalone", "2", "--strategy", "sgd"], "--strategy"),
        (["--oracle", "2", "--strategy", "sgd"], "--strategy"),
    ],
)
def test_options_without_effect_are_warnings(app, spec, args, flag) -> None:
    result = run(app, spec, *FAST, *args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"warning[T016]: {flag} has no effect" in result.stderr


def test_options_that_apply_give_no_warning(app, spec) -> None:
    args = ["--schedule", "step", "--milestones", "1", "--priority", "2,1,3", "--dry-run"]
    result = run(app, spec, *FAST, *args)
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_resume_of_a_missing_directory(app, tmp_path) -> None:
    result = run(app, "--resume", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "there is no run directory" in result.stderr


def test_resume_of_a_finished_run_says_so(app, spec, tmp_path) -> None:
    out = tmp_path / "run"
    assert run(app, spec, *FAST, "--out", str(out), "-q").exit_code == 0
    again = run(app, "--resume", str(out), "-q")
    assert again.exit_code == 0
    assert "has finished all its epochs" in again.stderr and "w4" in again.stdout


def test_default_run_dirs_of_the_same_second_differ(app, spec, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda _: "20260101-000000")
    for _ in range(2):
        assert run(app, spec, *FAST, "-q").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "tiny-osgd-20260101-000000",
        "tiny-osgd-20260101-000000-2",
    ]


def test_neither_spec_nor_resume_is_a_usage_error(app) -> None:
    result = run(app, "--epochs", "1")
    assert result.exit_code == 2 and "--resume" in result.output
