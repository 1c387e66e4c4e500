"""``nestdsl train --nproc N``: run N local training processes and collect rank 0's result.

Each child becomes a torchrun-style rank (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free
port) and calls :func:`nestdsl.train.train`, which joins the process group. The parent only
validates up front (so user errors are reported once, before any process starts) and reads
the finished run back from the run directory that rank 0 wrote.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nestdsl.ast import Spec
from nestdsl.data import build_datasets
from nestdsl.diagnostics import NestError, fail
from nestdsl.train import distributed
from nestdsl.train.batch_step import mode_of
from nestdsl.train.compiled import check_available, compiled_text
from nestdsl.train.config import TrainConfig
from nestdsl.train.config_checks import check_classes, check_config
from nestdsl.train.devices import resolve_device
from nestdsl.train.engine import (
    SpecOrNet,
    TrainResult,
    contract,
    materialize,
    total_epochs,
    train,
)
from nestdsl.train.graphed import check_graphable, graphs_text
from nestdsl.train.progress import RunPlan, strategy_text
from nestdsl.train.runs import (
    FINAL,
    RunDir,
    check_new_run,
    kept_only_when_started,
    load_tensors,
    read_results,
)

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
    """Train with ``nproc`` local processes (gloo on CPU, NCCL on GPUs); 1 means in-process.

    A run that stops before its first checkpoint (a user error, Ctrl-C) leaves no run
    directory behind.
    """
    if nproc < 1:
        fail("T014", f"--nproc must be at least 1, got {nproc}")
    with kept_only_when_started(Path(run_dir) if run_dir is not None else None):
        if nproc == 1:
            return train(_trainable(source, config.seed), config, run_dir, progress, resume=resume)
        return _spawn(nproc, source, config, run_dir, progress, resume)


def _spawn(
    nproc: int,
    source: Source,
    config: TrainConfig,
    run_dir: str | Path | None,
    progress: bool,
    resume: bool,
) -> TrainResult:
    net = materialize(_trainable(source, config.seed), config.seed, config.oracle).net
    check_config(config, contract(net).num_stages)
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
    if not resume and run_dir is not None:
        check_new_run(path)  # once, here: each rank's own check would race rank 0's files
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
        net = contract(net).subnetwork(config.standalone)
    net.load_state_dict(load_tensors(path / FINAL))
    results = read_results(path)
    return TrainResult(
        net=net,
        stages=results.stages,
        params=results.params,
        run_dir=path,
        epochs_done=results.epochs,
        test=results.test,
        split=results.split,
        oracle=results.oracle,
    )


def plan_run(
    source: Source, config: TrainConfig, run_dir: Path | None, *, resume: bool = False
) -> RunPlan:
    """Everything a run checks before its first step, without training or writing anything.

    Builds the network, checks the config against it, resolves the device, reads the data
    and checks the run directory: what ``nestdsl train --dry-run`` prints.
    """
    target = materialize(_trainable(source, config.seed), config.seed, config.oracle)
    net = contract(target.net)
    check_config(config, net.num_stages)
    device = resolve_device(config.device)
    check_available(config, device)
    check_graphable(config, device, 1)
    data = build_datasets(config.data, net.input_shape, augment=False, seed=config.seed)
    check_classes(data, net.num_classes)
    done = 0
    if run_dir is not None and resume:
        done = int(RunDir(run_dir).load_checkpoint()["epochs_done"])
    elif run_dir is not None:
        check_new_run(run_dir)
    labels = [str(x) for x in net.stage_labels]
    if target.oracle is not None:
        labels = [target.oracle.label]
    elif config.standalone:
        labels = [labels[config.standalone - 1]]
    return RunPlan(
        spec=target.spec_path,
        labels=labels,
        strategy=strategy_text(config, device.type),
        device=str(device),
        data=config.data,
        train_size=len(data.train),  # type: ignore[arg-type]
        val_size=len(data.val),  # type: ignore[arg-type]
        epochs=total_epochs(config, net.num_stages),
        epochs_done=done,
        run_dir=run_dir,
        compiled=compiled_text(config, mode_of(config, device.type)),
        graphs=graphs_text(config),
    )
