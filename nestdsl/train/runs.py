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
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from nestdsl.data.base import SplitRecord
from nestdsl.diagnostics import fail
from nestdsl.evaluate import StageMetrics
from nestdsl.files import unwritable
from nestdsl.oracle import OracleCost
from nestdsl.train.config import RUNTIME_FIELDS, TrainConfig

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
    before the name points at it. Temporaries of ``path`` that a killed writer left are removed
    first: a run directory has one writer, so they can belong to no write in progress.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
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
        """Make the directory for a new run after :func:`check_new_run` accepts it.

        Only the writing process checks: the others would find rank 0's first files there.
        """
        if self.writer:
            check_new_run(self.path)
            if self.path.is_dir() and killed_before_checkpoint(self.path):
                _discard(self.path, keep_folder=True)
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                fail("T015", f"cannot create the run directory {self.path}: {error.strerror}")

    def read_config(self) -> dict[str, Any]:
        """The stored config.json of a run to resume (T008 when the directory has no run)."""
        if not self.path.is_dir():
            fail(
                "T008",
                f"there is no run directory {self.path}",
                help="give the directory a run was started in (its --out, or the `run dir` "
                "line it printed)",
            )
        if not self.has_checkpoint:
            fail(
                "T008",
                f"{self.path} has no {CHECKPOINT} to resume from",
                help="a run writes its first checkpoint after its first epoch; start it again "
                "with the same --out, without --resume",
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


def check_new_run(path: Path) -> None:
    """Refuse, before anything is created, a directory that cannot hold a new run.

    A new run needs a folder that does not exist yet (it is created with its parents) or an
    empty one: run files are never mixed into a folder holding other files (T015), and a folder
    holding a run is continued with ``--resume``, never overwritten (T010).
    """
    if path.exists() and not path.is_dir():
        fail("T015", f"{path} is a file, not a run directory", help="give a new folder as --out")
    if path.is_dir():
        if (path / CHECKPOINT).is_file() or (path / FINAL).is_file():
            fail(
                "T010",
                f"{path} already holds a training run",
                help=f"continue it with --resume {path}, or choose another --out",
            )
        if any(path.iterdir()) and not killed_before_checkpoint(path):
            fail(
                "T015",
                f"{path} is a folder with other files in it, not a run directory",
                help="give a new or empty folder as --out",
            )
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        fail("T015", f"cannot create {path}: {parent} is a file, not a folder")
    reason = unwritable(parent)
    if reason is not None:
        fail("T015", f"cannot create {path} in {parent}: {reason}")


def killed_before_checkpoint(path: Path) -> bool:
    """Whether the folder holds only what a run killed before its first checkpoint left.

    That is its config, spec copy and metric lines, and perhaps the temporary file of a
    checkpoint write cut short: nothing to resume, so a new run started with the same
    ``--out`` takes the folder over (otherwise neither ``--resume`` nor a new start could).
    """
    names = [child.name for child in path.iterdir()]
    started = {CONFIG, SPEC_COPY, METRICS}
    return CONFIG in names and all(
        name in started or (name.startswith(".") and name.endswith(".tmp")) for name in names
    )


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder (or file) on ``path``'s way up that exists already."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


@contextmanager
def kept_only_when_started(path: Path | None) -> Iterator[None]:
    """Remove what a run wrote if it stops (error or Ctrl-C) before its first checkpoint.

    A failed start then leaves nothing behind: no ``config.json`` without a run to resume, and
    the folder, if the user made it, empty again.
    """
    existed = path is not None and path.exists()
    try:
        yield
    except BaseException:
        if path is not None and path.is_dir() and not (path / CHECKPOINT).is_file():
            _discard(path, keep_folder=existed)
        raise


def _discard(path: Path, *, keep_folder: bool) -> None:
    if not keep_folder:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def resume_hint(path: Path) -> str:
    """What to tell a user whose run stopped: where it is and the exact command to continue."""
    if not (path / CHECKPOINT).is_file():
        return "stopped before the first checkpoint; no run directory was kept"
    return f"run dir: {path}\ncontinue with: nestdsl train --resume {shlex.quote(str(path))}"


def default_run_dir(spec: Path, strategy: str) -> Path:
    """``runs/<spec>-<strategy>-<timestamp>``, sortable by start time; a second run started in
    the same second gets ``-2``, ``-3`` … rather than being refused as an existing run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{spec.stem}-{strategy.replace(':', '-')}-{stamp}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


@dataclass(frozen=True)
class RunRequest:
    """What `nestdsl train` was asked to do, once stored config and typed options are merged.

    ``finished`` marks a resumed run that has already trained all its epochs: continuing it
    only reports its results.
    """

    spec: Path
    config: TrainConfig
    run_dir: Path
    resume: bool
    finished: bool = False


def request_run(
    spec: Path | None,
    given: dict[str, object],
    *,
    out: Path | None = None,
    resume: Path | None = None,
) -> RunRequest:
    """Merge typed options with a resumed run's stored config and check the output folder.

    ``given`` holds only the options the user typed: on ``--resume`` they override the stored
    configuration (whether the result may differ is judged by :func:`check_resumable` once the
    network is built); a new run gets ``--out`` or :func:`default_run_dir`, checked before any
    work so a bad folder costs nothing.
    """
    from nestdsl.train.config import make_config

    if resume is None:
        if spec is None:
            fail("T001", "missing SPEC", help="nestdsl train SPEC [OPTIONS]")
        config = make_config(**given)
        run_dir = out or default_run_dir(spec, config.strategy)
        check_new_run(run_dir)
        return RunRequest(spec, config, run_dir, resume=False)
    if out is not None and out.resolve() != resume.resolve():
        fail("T008", "--out and --resume name different directories; give only --resume")
    stored = RunDir(resume).read_config()
    config = make_config(**{**(stored.get("config") or {}), **given})
    finished = (resume / FINAL).is_file() and (resume / RESULTS).is_file()
    return RunRequest(spec or _stored_spec(resume), config, resume, True, finished)


def _stored_spec(run_dir: Path) -> Path:
    copy = run_dir / SPEC_COPY
    if not copy.is_file():
        fail(
            "T008",
            f"{run_dir} has no copy of its spec ({SPEC_COPY})",
            help=f"give the spec: nestdsl train SPEC --resume {run_dir}",
        )
    return copy


def check_resumable(
    stored: dict[str, Any],
    run_path: Path | None,
    spec_text: str | None,
    network_fingerprint: str,
    config: TrainConfig,
) -> None:
    """Refuse to continue a run with a different spec, network or learning setup (T009)."""
    spec = stored.get("spec") or {}
    text = spec.get("text")
    if text is not None and spec_text not in (None, text):
        fail(
            "T009",
            f"the run in {run_path} was trained from a different spec ({spec.get('path')})",
            help=f"resume with the run's own copy: --resume {run_path} without "
            "SPEC, or start a new run with --out",
        )
    network = stored.get("network") or {}
    if network.get("fingerprint") != network_fingerprint:
        fail("T009", f"the network differs from the one trained in {run_path}")
    before = stored.get("config") or {}
    now = config.model_dump(mode="json")
    changed = sorted(
        key
        for key in set(before) | set(now)
        if key not in RUNTIME_FIELDS and before.get(key) != now.get(key)
    )
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        fail(
            "T009",
            f"cannot resume {run_path} with a different configuration ({detail})",
            help="only " + ", ".join(sorted(RUNTIME_FIELDS)) + " may change on resume",
        )


def restore_training(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Put a checkpoint back: weights, then (when the phase goes on) optimizer, scaler, RNGs.

    ``optimizer`` is None when the checkpoint ended a phase (greedy starts the next stage with
    a fresh optimizer) or the whole run.
    """
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"])


def params_key(config: TrainConfig) -> str:
    """The results' name for a stage's size, as the glossary defines the words: a nested run
    reports its anytime params (stages 1..k with their heads), a standalone D_K or an Oracle
    (both ordinary networks) its params."""
    plain = config.standalone is not None or config.oracle is not None
    return "params" if plain else "anytime_params"


@dataclass(frozen=True)
class RunResults:
    """A finished run's ``results.json``: the last validation and parameter count per stage
    (anytime params for a nested run, params for a standalone one; see :func:`params_key`)."""

    strategy: str
    standalone: int | None
    epochs: int
    data: str
    stages: list[StageMetrics]
    params: list[int]
    test: list[StageMetrics]
    """The test split's results, evaluated once when the run finished."""
    split: SplitRecord | None
    oracle: OracleCost | None


def read_results(path: Path) -> RunResults:
    """Read ``RUN_DIR/results.json`` (T008 when the run has not finished)."""
    file = path / RESULTS
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        fail("T008", f"cannot read {file}: {error}", help="a run writes it when it finishes")
    split, oracle = data.get("data_split"), data.get("oracle")
    return RunResults(
        strategy=str(data["strategy"]),
        standalone=data.get("standalone"),
        epochs=int(data["epochs"]),
        data=str(data["data"]),
        stages=_metrics(data["stages"]),
        params=[int(row.get("anytime_params", row.get("params"))) for row in data["stages"]],
        test=_metrics(data.get("test", [])),
        split=SplitRecord(**split) if split else None,
        oracle=OracleCost(**oracle) if oracle else None,
    )


def _metrics(rows: list[dict[str, Any]]) -> list[StageMetrics]:
    keys = ("stage", "label", "top1", "top5", "loss", "count")
    return [StageMetrics(**{k: row[k] for k in keys}) for row in rows]
