"""SIGKILL at seeded random points of `nestdsl train` (inside checkpoint writes too), then
`--resume`: no corrupted checkpoint, and the final weights of an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from kill_trials import Plan, plans, trials

from nestdsl.diagnostics import NestError
from nestdsl.train import RunDir
from nestdsl.train.runs import atomic_write, check_new_run

TRIALS = int(os.environ.get("NESTDSL_KILL_TRIALS", "3"))
SEED = int(os.environ.get("NESTDSL_KILL_SEED", "0"))


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    outcomes = list(trials(TRIALS, SEED, tmp_path))
    failed = [o for o in outcomes if not (o.equal and o.torn_refused and o.temporaries_after == 0)]
    assert not failed, failed
    writes = [o for o in outcomes if o.plan.mode == "write"]
    # every write kill left its torn bytes in a temporary, never in checkpoint.pt
    assert writes and all(o.torn_files == 1 for o in writes)


def test_plans_are_seeded_and_cover_both_kinds_of_kill() -> None:
    first = plans(6, seed=3, duration=10.0)
    assert first == plans(6, seed=3, duration=10.0) and first != plans(6, seed=4, duration=10.0)
    assert {p.mode for p in first} == {"write", "time"}
    assert all(0 <= p.delay <= 10.0 for p in first if p.mode == "time")
    assert all(isinstance(p, Plan) and 1 <= p.save <= 4 for p in first if p.mode == "write")


def _killed_before_first_checkpoint(path: Path) -> None:
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "spec.nest").write_text("nest 1\n")
    (path / ".checkpoint.pt.k3x9.tmp").write_bytes(b"torn")


def test_a_run_killed_before_its_first_checkpoint_starts_again_in_its_folder(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    _killed_before_first_checkpoint(run)
    with pytest.raises(NestError, match="T008"):
        RunDir(run).read_config()  # nothing to resume
    check_new_run(run)  # but a new start may take the folder over
    RunDir(run).create()
    assert run.is_dir() and not list(run.iterdir())


def test_a_folder_with_other_files_is_still_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _killed_before_first_checkpoint(run)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(NestError, match="T015"):
        check_new_run(run)
    (run / "notes.txt").unlink()
    (run / "config.json").unlink()
    with pytest.raises(NestError, match="T015"):  # no config: not a run's leftovers
        check_new_run(run)


def test_a_write_removes_the_temporaries_a_killed_writer_left(tmp_path: Path) -> None:
    stale = tmp_path / ".checkpoint.pt.k3x9.tmp"
    other = tmp_path / ".final.pt.a1b2.tmp"
    stale.write_bytes(b"torn")
    other.write_bytes(b"torn")
    atomic_write(tmp_path / "checkpoint.pt", lambda file: torch.save({"w": torch.ones(2)}, file))
    assert not stale.exists() and other.exists()
    assert torch.equal(torch.load(tmp_path / "checkpoint.pt")["w"], torch.ones(2))
