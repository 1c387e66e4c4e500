"""Ctrl-C on a real `nestdsl` process: exit 130, no traceback, the way back into the run.

SIGINT is sent to a subprocess (what a terminal does), at start-up and mid-training.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_toy import write_tiny_spec

pytestmark = pytest.mark.slow


def _nestdsl() -> list[str]:
    exe = shutil.which("nestdsl", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "nestdsl.cli"]


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*_nestdsl(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=120)


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.parametrize("delay", [0.8, 2.0])
def test_ctrl_c_during_start_up(tmp_path: Path, delay: float) -> None:
    """While nestdsl or PyTorch are being imported, or the network and data are being built
    (not during the interpreter's own start-up, which no program can handle)."""
    spec = write_tiny_spec(tmp_path)
    process = _start("train", spec, "--data", "synthetic:64", "--out", str(tmp_path / "run"))
    time.sleep(delay)
    _, err = _interrupt(process)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal came")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_ctrl_c_mid_training_names_the_run_and_the_resume_command(tmp_path: Path) -> None:
    spec = write_tiny_spec(tmp_path)
    run = tmp_path / "run"
    options = ["--data", "synthetic:2048", "--epochs", "50", "--batch-size", "16", "-q"]
    process = _start("train", spec, *options, "--device", "cpu", "--out", str(run))
    _wait_for(run / "checkpoint.pt", process)
    _, err = _interrupt(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"run dir: {run}" in err
    assert f"continue with: nestdsl train --resume {run}" in err


def test_ctrl_c_before_the_first_checkpoint_keeps_nothing(tmp_path: Path) -> None:
    spec = write_tiny_spec(tmp_path)
    run = tmp_path / "run"
    options = ["--data", "synthetic:20000", "--batch-size", "8", "--device", "cpu"]
    process = _start("train", spec, *options, "--out", str(run))
    _wait_for(run / "config.json", process)
    _, err = _interrupt(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "no run directory was kept" in err
    assert not run.exists()
