"""Run directories: atomic checkpoints, safe loading, exact resumption, compatibility checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_toy import make_toy, states_equal, write_tiny_spec

from nestdsl.diagnostics import NestError
from nestdsl.train import RunDir, train
from nestdsl.train.config import make_config

FAST = {"data": "synthetic:128", "batch_size": 32, "lr": 0.05, "device": "cpu", "epochs": 3}


def config(**overrides: object):
    return make_config(**{**FAST, **overrides})


@pytest.mark.parametrize(
    ("overrides", "stop"),
    [({"strategy": "osgd"}, 1), ({"strategy": "greedy", "optimizer": "adamw", "epochs": 1}, 2)],
)
def test_stopped_and_resumed_run_is_bit_identical(tmp_path, overrides, stop) -> None:
    cfg = config(**overrides)
    straight = make_toy()
    train(straight, cfg, tmp_path / "a", progress=False)

    first = train(make_toy(), cfg, tmp_path / "b", progress=False, until_epoch=stop)
    assert first.epochs_done == stop and not first.finished
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed = make_toy()  # a fresh process would rebuild the net from scratch
    result = train(resumed, cfg, tmp_path / "b", progress=False, resume=True)

    assert states_equal(straight.state_dict(), resumed.state_dict())
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    assert states_equal(a, b)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["stages"][0]["label"] == "w1"


def test_metric_lines_after_the_checkpoint_are_dropped_on_resume(tmp_path) -> None:
    cfg = config()
    train(make_toy(), cfg, tmp_path, progress=False, until_epoch=2)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 3, "lr": 1.0}) + "\n" + '{"epoch": 4, "tor')  # torn line
    train(make_toy(), cfg, tmp_path, progress=False, resume=True)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[2])["lr"] != 1.0


class Payload:
    """Unpickling this would run a shell command; weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "model": Payload(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(NestError, match="T008") as caught:
        RunDir(tmp_path).load_checkpoint()
    assert "cannot read checkpoint" in caught.value.render()
    assert not marker.exists()


def test_atomic_checkpoint_leaves_no_temporary_files(tmp_path) -> None:
    train(make_toy(), config(epochs=2), tmp_path, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epochs_done"] == 2 and state["config"]["epochs"] == 2
    assert isinstance(state["rng"]["torch"], torch.Tensor)


def test_resume_refusals(tmp_path) -> None:
    with pytest.raises(NestError, match="T008"):
        train(make_toy(), config(), tmp_path / "empty", progress=False, resume=True)
    train(make_toy(), config(), tmp_path / "run", progress=False, until_epoch=1)
    with pytest.raises(NestError, match="T010"):
        train(make_toy(), config(), tmp_path / "run", progress=False)
    with pytest.raises(NestError, match=r"T009[\s\S]*lr: 0.05 -> 0.2"):
        train(make_toy(), config(lr=0.2), tmp_path / "run", progress=False, resume=True)
    with pytest.raises(NestError, match="network differs"):
        wider = make_toy(widths=(4, 4, 16))
        train(wider, config(), tmp_path / "run", progress=False, resume=True)
    # runtime-only settings may change
    train(
        make_toy(), config(workers=0, device="cpu"), tmp_path / "run", progress=False, resume=True
    )


def test_resume_with_a_different_spec_is_refused(tmp_path) -> None:
    spec = Path(write_tiny_spec(tmp_path))
    train(spec, config(epochs=2), tmp_path / "run", progress=False, until_epoch=1)
    spec.write_text(spec.read_text().replace("channels=8 stride=1", "channels=8 stride=1 "))
    with pytest.raises(NestError, match="different spec"):
        train(spec, config(epochs=2), tmp_path / "run", progress=False, resume=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited early: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


def _nestdsl() -> list[str]:
    """The installed console script (what users run); `python -m nestdsl.cli` otherwise."""
    exe = shutil.which("nestdsl", path=str(Path(sys.executable).parent))
    return [exe, "train"] if exe else [sys.executable, "-m", "nestdsl.cli", "train"]


@pytest.mark.slow
def test_sigkilled_subprocess_resumes_to_identical_weights(tmp_path) -> None:
    """`nestdsl train` killed mid-epoch, then resumed, ends with an uninterrupted run's weights.

    Also the real-process CLI contract: table on stdout, per-epoch lines but no progress bars
    on a non-terminal stderr, and `python -m nestdsl.cli train` (the torchrun entry) for resuming.
    """
    spec = write_tiny_spec(tmp_path)
    options = ["--data", "synthetic:512", "--epochs", "3", "--batch-size", "16", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    straight = subprocess.Popen(
        [*_nestdsl(), spec, *options, "--out", str(tmp_path / "a")], **pipes
    )
    victim = subprocess.Popen(
        [*_nestdsl(), spec, *options, "--quiet", "--out", str(tmp_path / "b")], **pipes
    )
    _wait_for(tmp_path / "b" / "checkpoint.pt", victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert not (tmp_path / "b" / "final.pt").exists(), "killed after the run had finished"
    done = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epochs_done"]
    assert done < 3

    resumed = subprocess.run(
        [sys.executable, "-m", "nestdsl.cli", "train", "--resume", str(tmp_path / "b"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"run dir: {tmp_path / 'b'}" in resumed.stdout and "w4" in resumed.stdout
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    assert "w4" in out and f"run dir: {tmp_path / 'a'}" in out
    assert "epoch 3/3" in err and "\x1b[" not in err and "━" not in err

    a = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=True)
    assert states_equal(a, b)
    ca = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert states_equal(ca["model"], cb["model"]) and ca["step"] == cb["step"]
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "b" / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3]
