"""Faults while writing a checkpoint: a full disk keeps the previous checkpoint intact."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import IO

import pytest
import torch

from nestdsl.train import RunDir, runs


def test_full_disk_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    run = RunDir(tmp_path)
    run.save_checkpoint({"epochs_done": 1, "model": {"w": torch.ones(3)}})

    def full_disk(data: object, file: IO[bytes]) -> None:
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run.save_checkpoint({"epochs_done": 2, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()

    state = run.load_checkpoint()
    assert state["epochs_done"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
