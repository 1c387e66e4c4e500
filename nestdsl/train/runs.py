"""The run directory: resolved config, per-epoch metrics, atomic checkpoints, final results.

Layout of ``RUN_DIR``::

    config.json      the resolved TrainConfig + spec path and text (what `--resume` checks)
    spec.nest        a copy of the spec, so `nestdsl train --resume RUN_DIR` needs nothing else
    metrics.jsonl    one JSON object per finished epoch
    checkpoint.pt    the latest resumable state (written atomically)
    final.pt         the trained weights only (a plain state_dict)
    results.json     the final per-stage table

Checkpoints hold only tensors and primitive containers and are read back with
``torch.load(weights_only=True)``: opening a checkpoint never runs pickled code, so a run
directory from elsewhere is as safe to resume as a weights file is to load.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from nestdsl.train.checks import fail

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
FINAL = "final.pt"
RESULTS = "results.json"
SPEC_COPY = "spec.nest"
FORMAT = 1
"""Bumped when the checkpoint layout changes, so an old run is refused rather than misread."""


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp's 0600 is too strict for results)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write via a temporary file in the same directory, fsync it, then ``os.replace``.

    A reader (or a resumed run after SIGKILL) sees either the old file or the new one, never a
    torn one: the rename is atomic on one filesystem, and the fsync makes the content durable
    before the name points at it.
    """
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, data: object) -> None:
    """Atomically write pretty JSON (configs and results are read by people too)."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def save_tensors(path: Path, data: object) -> None:
    """Atomically ``torch.save`` a structure of tensors and primitives."""
    atomic_write(path, lambda file: torch.save(data, file))


def load_tensors(path: Path) -> Any:
    """Load with ``weights_only=True``; anything needing code execution is refused (T008)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail("T008", f"no checkpoint at {path}")
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fail(
            "T008",
            f"cannot read checkpoint {path}: {first}",
            help="checkpoints may hold only tensors and plain containers; this file is damaged "
            "or was not written by nestdsl",
        )


class RunDir:
    """One run's directory. Only the writing process (rank 0) creates or changes files."""

    def __init__(self, path: str | os.PathLike[str], *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file()

    def create(self) -> None:
        """Make the directory for a new run; refuse one that already holds a run (T010)."""
        if self.has_checkpoint or self.file(FINAL).is_file():
            fail(
                "T010",
                f"{self.path} already holds a training run",
                help=f"continue it with --resume {self.path}, or choose another --out",
            )
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict[str, Any]:
        """The stored config.json of a run to resume (T008 when the directory has no run)."""
        if not self.has_checkpoint:
            fail(
                "T008",
                f"{self.path} has no {CHECKPOINT} to resume from",
                help="a run writes its first checkpoint after its first epoch; start it again "
                "without --resume",
            )
        try:
            data = json.loads(self.file(CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            fail("T008", f"cannot read {self.file(CONFIG)}: {error}")
        if not isinstance(data, dict):
            fail("T008", f"{self.file(CONFIG)} is not a JSON object")
        return data

    def write_config(self, data: dict[str, Any], spec_text: str | None) -> None:
        if not self.writer:
            return
        write_json(self.file(CONFIG), data)
        if spec_text is not None:
            atomic_write(self.file(SPEC_COPY), lambda f: f.write(spec_text.encode("utf-8")))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's line and fsync it (cheap: once per epoch)."""
        if not self.writer:
            return
        with self.file(METRICS).open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Complete metric lines (a line torn by a kill is skipped)."""
        path = self.file(METRICS)
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop lines of epochs after the checkpoint: the resumed run writes them again."""
        if not self.writer:
            return
        kept = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= epochs_done]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.file(METRICS), lambda file: file.write(text.encode("utf-8")))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.writer:
            save_tensors(self.file(CHECKPOINT), {"format": FORMAT, **state})

    def load_checkpoint(self) -> dict[str, Any]:
        state = load_tensors(self.file(CHECKPOINT))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            fail("T008", f"{self.file(CHECKPOINT)} is not a nestdsl checkpoint (format {FORMAT})")
        return state

    def save_final(self, weights: dict[str, torch.Tensor]) -> None:
        if self.writer:
            save_tensors(self.file(FINAL), weights)

    def write_results(self, data: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.file(RESULTS), data)


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step may draw from, as tensors and primitives only."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
