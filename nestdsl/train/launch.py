"""``nestdsl train --nproc N``: run N local training processes and collect rank 0's result.

Each child becomes a torchrun-style rank (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free
port) and calls :func:`nestdsl.train.train`, which joins the process group. The parent only
validates up front (so user errors are reported once, before any process starts) and reads
the finished run back from the run directory that rank 0 wrote.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nestdsl.ast import Spec
from nestdsl.diagnostics import NestError
from nestdsl.evaluate import StageMetrics
from nestdsl.train import distributed
from nestdsl.train.checks import check_config, fail
from nestdsl.train.config import TrainConfig
from nestdsl.train.devices import resolve_device, thread_budget
from nestdsl.train.engine import SpecOrNet, TrainResult, materialize, train
from nestdsl.train.runs import FINAL, RESULTS, load_tensors

Source = Spec | str | Path | Callable[[], nn.Module]
"""What each process builds its network from: a spec, or a picklable zero-argument factory."""


def _is_factory(source: Source) -> bool:
    return callable(source) and not isinstance(source, Spec | str | Path)


def _trainable(source: Source, seed: int) -> SpecOrNet:
    """What :func:`train` takes: the spec itself, or the factory's module (built seeded)."""
    if _is_factory(source):
        torch.manual_seed(seed)
        return source()  # type: ignore[operator]
    return source  # type: ignore[return-value]


def _worker(
    rank: int,
    nproc: int,
    port: int,
    source: Source,
    config_data: dict[str, Any],
    run_dir: str,
    progress: bool,
    resume: bool,
) -> None:
    distributed.child_environment(rank, nproc, port)
    config = TrainConfig.model_validate(config_data)
    if resolve_device(config.device, rank).type == "cpu":
        torch.set_num_threads(thread_budget(nproc, config.workers))
    try:
        train(_trainable(source, config.seed), config, run_dir, progress, resume=resume)
    except NestError as error:
        if rank == 0:
            print(error.render(), file=sys.stderr)
        sys.exit(1)


def launch(
    nproc: int,
    source: Source,
    config: TrainConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train with ``nproc`` local processes (gloo on CPU, NCCL on GPUs); 1 means in-process."""
    if nproc < 1:
        fail("T014", f"--nproc must be at least 1, got {nproc}")
    if nproc == 1:
        return train(_trainable(source, config.seed), config, run_dir, progress, resume=resume)
    net = materialize(_trainable(source, config.seed), config.seed).net
    check_config(config, int(getattr(net, "num_stages", 1)))
    device = resolve_device(config.device)
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        fail(
            "T014",
            f"--nproc {nproc} on CUDA needs {nproc} GPUs, this machine has "
            f"{torch.cuda.device_count()}",
            help="use fewer processes, or --device cpu",
        )
    distributed.split_batch(config.batch_size, nproc)
    path = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="nestdsl-"))
    try:
        distributed.spawn(
            nproc, _worker, (source, config.model_dump(mode="json"), str(path), progress, resume)
        )
    except Exception as error:  # ProcessExitedException / ProcessRaisedException
        fail("T014", f"a training process failed: {str(error).strip().splitlines()[0]}")
    return _collect(net, config, path)


def _collect(net: nn.Module, config: TrainConfig, path: Path) -> TrainResult:
    """Rank 0's final weights and results, read back into the parent's copy of the network."""
    if config.standalone is not None:
        net = net.subnetwork(config.standalone)  # type: ignore[operator]
    net.load_state_dict(load_tensors(path / FINAL))
    data = json.loads((path / RESULTS).read_text(encoding="utf-8"))
    keys = ("stage", "label", "top1", "top5", "loss", "count")
    stages = [StageMetrics(**{k: row[k] for k in keys}) for row in data["stages"]]
    return TrainResult(
        net=net,
        stages=stages,
        params=[row["params"] for row in data["stages"]],
        run_dir=path,
        epochs_done=int(data["epochs"]),
    )
