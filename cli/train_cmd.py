"""`nestdsl train SPEC`: train an anytime network and print its per-stage results.

Every option defaults to "not given" (None), so that with ``--resume RUN_DIR`` the stored
configuration is taken as is and only options the user actually typed are applied on top of
it (and refused if they would change what the run learns).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nestdsl.cli.common import user_errors
from nestdsl.train import distributed
from nestdsl.train.checks import fail
from nestdsl.train.config import make_config
from nestdsl.train.engine import TrainResult
from nestdsl.train.launch import launch
from nestdsl.train.runs import SPEC_COPY, RunDir

Opt = typer.Option


def _numbers(text: str | None, kind: type[int] | type[float], option: str) -> list[Any] | None:
    """``"2,1,3"`` → ``[2, 1, 3]`` (T001 with the offending item otherwise)."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [kind(item) for item in items]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        fail("T001", f"{option} expects comma-separated {noun}, got `{text}`")


def _default_out(spec: Path, strategy: str | None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.stem}-{strategy or 'osgd'}-{stamp}"


def train(
    spec: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            file_okay=True,
            dir_okay=False,
            readable=True,
            help="The .nest spec to train (optional with --resume: the run keeps a copy).",
        ),
    ] = None,
    data: Annotated[str | None, Opt(help="digits | synthetic[:N] | cifar10:PATH | ...")] = None,
    strategy: Annotated[
        str | None,
        Opt(help="greedy | sgd | sgd-sum | sgd-norm | osgd | osgd-norm (default osgd)"),
    ] = None,
    priority: Annotated[str | None, Opt(help="OSGD priority order, e.g. 2,1,3")] = None,
    importances: Annotated[str | None, Opt(help="Loss importances k_i, e.g. 1,1,2")] = None,
    norm_constant: Annotated[float | None, Opt(help="NormSGD constant C (default 0.5)")] = None,
    epochs: Annotated[int | None, Opt(help="Epochs (greedy: per stage, n × epochs in all)")] = None,
    batch_size: Annotated[int | None, Opt(help="Global batch size")] = None,
    optimizer: Annotated[str | None, Opt(help="sgd | adamw")] = None,
    lr: Annotated[float | None, Opt(help="Initial learning rate")] = None,
    lr_final: Annotated[float | None, Opt(help="Final LR (exp default: 0.8% of --lr)")] = None,
    schedule: Annotated[
        str | None, Opt(help="cosine (default) | exp (to the paper's end LR) | step | constant")
    ] = None,
    milestones: Annotated[str | None, Opt(help="Epochs where `step` decays, e.g. 30,60")] = None,
    momentum: Annotated[float | None, Opt(help="SGD momentum (default 0.9)")] = None,
    nesterov: Annotated[bool | None, Opt("--nesterov/--no-nesterov")] = None,
    weight_decay: Annotated[float | None, Opt(help="Weight decay (default 5e-4)")] = None,
    augment: Annotated[bool | None, Opt("--augment/--no-augment")] = None,
    seed: Annotated[int | None, Opt(help="Random seed (default 0)")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda | cuda:N")] = None,
    amp: Annotated[str | None, Opt(help="auto | bf16 | fp16 | off")] = None,
    channels_last: Annotated[bool | None, Opt("--channels-last/--no-channels-last")] = None,
    workers: Annotated[int | None, Opt(help="DataLoader worker processes")] = None,
    standalone: Annotated[
        int | None, Opt(help="Train only D_K, cut out of the nested network (pruned edges kept)")
    ] = None,
    oracle: Annotated[
        int | None, Opt(help="Train the Oracle of stage K: an independent, un-pruned network")
    ] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Checkpoint every N epochs")] = None,
    log: Annotated[str | None, Opt(help="jsonl | tensorboard")] = None,
    out: Annotated[Path | None, Opt("--out", "-o", help="Run directory to create")] = None,
    resume: Annotated[
        Path | None, Opt(help="Continue the run in this directory from its last checkpoint")
    ] = None,
    nproc: Annotated[int, Opt(min=1, help="Local processes (torch.distributed)")] = 1,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress output")] = False,
) -> None:
    """Train SPEC with a gradient strategy and print a per-stage results table."""
    with user_errors():
        given = {
            "data": data,
            "strategy": strategy,
            "priority": _numbers(priority, int, "--priority"),
            "importances": _numbers(importances, float, "--importances"),
            "norm_constant": norm_constant,
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": optimizer,
            "lr": lr,
            "lr_final": lr_final,
            "schedule": schedule,
            "milestones": _numbers(milestones, int, "--milestones"),
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "augment": augment,
            "seed": seed,
            "device": device,
            "amp": amp,
            "channels_last": channels_last,
            "workers": workers,
            "standalone": standalone,
            "oracle": oracle,
            "checkpoint_every": checkpoint_every,
            "log": log,
        }
        values = {key: value for key, value in given.items() if value is not None}
        if resume is not None:
            if out is not None and out.resolve() != resume.resolve():
                fail("T008", "--out and --resume name different directories; give only --resume")
            stored = RunDir(resume).read_config()
            values = {**(stored.get("config") or {}), **values}
            spec = spec or _stored_spec(resume)
            run_dir = resume
        else:
            if spec is None:
                fail("T001", "missing SPEC", help="nestdsl train SPEC [OPTIONS]")
            run_dir = out or _default_out(spec, strategy)
        config = make_config(**values)
        result = launch(nproc, spec, config, run_dir, progress=not quiet, resume=resume is not None)
        if distributed.from_env().is_main:  # under torchrun every rank runs this command
            _print_table(result)


def _stored_spec(run_dir: Path) -> Path:
    copy = run_dir / SPEC_COPY
    if not copy.is_file():
        fail(
            "T008",
            f"{run_dir} has no copy of its spec ({SPEC_COPY})",
            help=f"give the spec: nestdsl train SPEC --resume {run_dir}",
        )
    return copy


def _print_table(result: TrainResult) -> None:
    """Per-stage tables on stdout (rich degrades to plain text when stdout is not a terminal)."""
    console = Console(soft_wrap=True)
    for title, rows in (("validation results", result.stages), ("test results", result.test)):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for name in ("stage", "label", "top-1", "top-5", "params"):
            table.add_column(name, justify="left" if name == "label" else "right")
        for metrics, params in zip(rows, result.params, strict=False):
            table.add_row(
                str(metrics.stage),
                metrics.label,
                f"{100 * metrics.top1:.2f}%",
                f"{100 * metrics.top5:.2f}%",
                f"{params:,}",
            )
        console.print(table)
    console.print(f"epochs trained: {result.epochs_done}", highlight=False, markup=False)
    if result.split is not None:
        split = result.split
        console.print(
            f"data: {split.train:,} train / {split.val:,} validation / {split.test:,} test",
            highlight=False,
            markup=False,
        )
    if result.oracle is not None:
        o = result.oracle
        console.print(
            f"oracle of stage {o.stage} ({o.label}): {o.params:,} params, {o.flops:,} FLOPs; "
            f"nested D_{o.stage}: {o.nested_params:,} params, {o.nested_flops:,} FLOPs",
            highlight=False,
            markup=False,
        )
    if result.run_dir is not None:
        console.print(f"run dir: {result.run_dir}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add the `train` command to the nestdsl application."""
    app.command("train")(train)
