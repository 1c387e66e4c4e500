"""Seeded SIGKILL trials of a real `nestdsl train` process, each followed by `--resume`.

A trial starts `nestdsl train` on a tiny synthetic problem and kills it with SIGKILL at one of
two kinds of point, chosen from the trial's seed:

- ``time``: after a random wall-clock delay, counted from the moment the run directory
  appears, up to the time an uninterrupted run took from there to its end (building the
  network, an epoch, evaluation or a write: wherever the delay lands);
- ``write``: *inside* a checkpoint write. The process runs through this file's ``hook``
  command, which wraps ``torch.save`` so that the chosen save (1 = the first epoch's
  checkpoint, ..., the last = ``final.pt``) writes a random fraction of its bytes into the
  temporary file, fsyncs them and then SIGKILLs its own process. Random wall times land
  inside a write too rarely to test it, so the hook makes it certain.

After the kill the run directory must hold either no checkpoint or one that loads
(``RunDir.load_checkpoint``); the run is then continued with ``nestdsl train --resume DIR``
(or, when it was killed before its first checkpoint, started again with its own command) and
its ``final.pt``, checkpoint model and metric lines must equal an uninterrupted run's,
tensor for tensor (``torch.equal``).

CI runs three trials (tests/train/test_kill_resume.py); a longer run::

    NESTDSL_KILL_TRIALS=50 .venv/bin/pytest tests/train/test_kill_resume.py -q
    .venv/bin/python tests/train/kill_trials.py trials 50 --seed 0     # one JSON line per trial
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import torch
from train_toy import TINY_SPEC

from nestdsl.diagnostics import NestError
from nestdsl.train import RunDir

OPTIONS = ("--data", "synthetic:256", "--epochs", "3", "--batch-size", "16", "--device", "cpu")
SAVES = 4
"""torch.save calls of an uninterrupted run: one checkpoint per epoch, then final.pt."""
TIMEOUT = float(os.environ.get("NESTDSL_KILL_TIMEOUT", "300"))
"""Seconds a run may take; raise it for long runs under `nice` on a busy machine."""


@dataclass(frozen=True)
class Plan:
    """Where one trial kills: after ``delay`` seconds, or in save number ``save`` after
    writing ``fraction`` of its bytes."""

    trial: int
    mode: str
    delay: float = 0.0
    save: int = 0
    fraction: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What one trial saw: whether the kill landed (a time kill may come after the run
    ended), the checkpoint the kill left (epochs done, or None), the torn
    temporary files it left and whether each, put in the checkpoint's place, is refused
    (T008); how the run was continued; whether it then equals the reference run
    (``equal``); and the temporary files left once it finished."""

    plan: Plan
    killed: bool
    killed_with_checkpoint: int | None
    torn_files: int
    torn_refused: bool
    continued: str
    equal: bool
    temporaries_after: int


def plans(count: int, seed: int, duration: float) -> list[Plan]:
    """``count`` seeded kill points: write kills and time kills alternate."""
    rng = random.Random(seed)
    chosen = []
    for trial in range(count):
        if trial % 2 == 0:
            chosen.append(
                Plan(trial, "write", save=rng.randint(1, SAVES), fraction=rng.uniform(0.02, 0.98))
            )
        else:
            chosen.append(Plan(trial, "time", delay=rng.uniform(0.0, duration)))
    return chosen


def _entry() -> list[str]:
    """The installed console script (what users run); `python -m nestdsl.cli` otherwise."""
    exe = shutil.which("nestdsl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "nestdsl.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train_command(spec: Path, out: Path) -> list[str]:
    return [*_entry(), "train", str(spec), *OPTIONS, "--quiet", "--out", str(out)]


def _wait_for_run_dir(process: subprocess.Popen[str], out: Path) -> None:
    """Return once ``out/config.json`` exists (the run has started) or the process ended."""
    while not (out / "config.json").exists() and process.poll() is None:
        time.sleep(0.01)


def reference(spec: Path, out: Path) -> float:
    """Run uninterrupted; return the seconds from its first file to its end (the range of
    the time kills: start-up before it, importing torch, is the same every time)."""
    run = subprocess.Popen(
        train_command(spec, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _wait_for_run_dir(run, out)
    started = time.monotonic()
    _, err = run.communicate(timeout=TIMEOUT)
    if run.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{err}")
    return time.monotonic() - started


def _killed_run(plan: Plan, spec: Path, out: Path) -> bool:
    """Start the victim and let it die as the plan says; return whether SIGKILL ended it."""
    command = train_command(spec, out)
    if plan.mode == "write":
        hook = [sys.executable, __file__, "hook", str(plan.save), str(plan.fraction), "--"]
        command = [*hook, *command[len(_entry()) :]]
    victim = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
    )
    if plan.mode == "time":
        _wait_for_run_dir(victim, out)
        try:
            victim.wait(timeout=plan.delay)
        except subprocess.TimeoutExpired:
            victim.send_signal(signal.SIGKILL)
    _, err = victim.communicate(timeout=TIMEOUT)
    killed = victim.returncode == -signal.SIGKILL
    if plan.mode == "write" and not killed:
        raise RuntimeError(f"the write hook did not fire ({victim.returncode}):\n{err}")
    return killed


def _checkpoint_left(out: Path) -> int | None:
    """Epochs done by the checkpoint the kill left; loading it must never fail (T008)."""
    if not RunDir(out).has_checkpoint:
        return None
    return int(RunDir(out).load_checkpoint()["epochs_done"])


def _continue(spec: Path, out: Path, resumable: bool) -> str:
    """`--resume` when a checkpoint exists, else the same command again; return which."""
    command = [*_entry(), "train", "--resume", str(out), "--quiet"]
    how = "resume"
    if not resumable:
        command, how = train_command(spec, out), "restart"
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{how} of {out} failed:\n{done.stderr}")
    return how


def same_run(a: Path, b: Path) -> bool:
    """Final weights, last checkpoint's model and step, and metric epochs all equal."""

    def load(path: Path) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    def equal(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> bool:
        return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    ca, cb = load(a / "checkpoint.pt"), load(b / "checkpoint.pt")
    epochs = [[json.loads(line)["epoch"] for line in (d / "metrics.jsonl").open()] for d in (a, b)]
    return (
        equal(load(a / "final.pt"), load(b / "final.pt"))
        and equal(ca["model"], cb["model"])
        and ca["step"] == cb["step"]
        and epochs[0] == epochs[1]
    )


def _torn_refused(torn: list[Path], scratch: Path) -> bool:
    """Each torn temporary, renamed to ``checkpoint.pt``, must be refused with T008."""
    for file in torn:
        scratch.mkdir(exist_ok=True)
        shutil.copyfile(file, scratch / "checkpoint.pt")
        try:
            RunDir(scratch).load_checkpoint()
        except NestError as error:
            if error.diagnostics[0].code != "T008":
                return False
        else:
            return False
    return True


def run_trial(plan: Plan, spec: Path, out: Path, expected: Path) -> Outcome:
    """Kill, check what was left, continue, compare with the uninterrupted run in ``expected``."""
    killed = _killed_run(plan, spec, out)
    left = _checkpoint_left(out)
    torn = sorted(out.glob(".*.tmp")) if out.is_dir() else []
    refused = _torn_refused(torn, out.with_name(out.name + "-torn"))
    how = _continue(spec, out, left is not None)
    after = len(list(out.glob(".*.tmp")))
    return Outcome(plan, killed, left, len(torn), refused, how, same_run(expected, out), after)


def write_spec(directory: Path) -> Path:
    path = directory / "tiny.nest"
    path.write_text(TINY_SPEC, encoding="utf-8")
    return path


def trials(count: int, seed: int, workdir: Path) -> Iterator[Outcome]:
    """Run the reference and ``count`` trials in ``workdir``."""
    spec = write_spec(workdir)
    duration = reference(spec, workdir / "reference")
    for plan in plans(count, seed, duration):
        yield run_trial(plan, spec, workdir / f"trial-{plan.trial}", workdir / "reference")


def _hooked_save(save: int, fraction: float) -> None:
    """Make ``torch.save`` number ``save`` write ``fraction`` of its bytes, then SIGKILL."""
    real = torch.save
    calls = [0]

    def save_then_die(data: object, file: IO[bytes]) -> None:
        calls[0] += 1
        if calls[0] != save:
            real(data, file)
            return
        buffer = io.BytesIO()
        real(data, buffer)
        file.write(buffer.getvalue()[: int(len(buffer.getvalue()) * fraction)])
        file.flush()
        os.fsync(file.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("trials", help="run seeded kill trials, one JSON line each")
    run.add_argument("count", type=int)
    run.add_argument("--seed", type=int, default=0)
    hook = sub.add_parser("hook", help="run `nestdsl ARGS` dying inside a torch.save")
    hook.add_argument("save", type=int)
    hook.add_argument("fraction", type=float)
    hook.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "hook":
        _hooked_save(args.save, args.fraction)
        from nestdsl.cli.entry import main as nestdsl

        sys.argv = ["nestdsl", *[a for a in args.args if a != "--"]]
        nestdsl()
        return
    with tempfile.TemporaryDirectory() as workdir:
        for outcome in trials(args.count, args.seed, Path(workdir)):
            print(json.dumps(asdict(outcome)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
