"""`nestdsl train SPEC`: train an anytime network and print its per-stage results.

The training options are not listed here: one flag per :class:`TrainConfig` field is derived
from the model (name, type, description, default), so a new field is a new flag with its help.
Every such flag defaults to "not given" (None), so that with ``--resume RUN_DIR`` the stored
configuration is taken as is and only options the user typed are applied on top of it (and
refused if they would change what the run learns).
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo

from nestdsl.cli.common import INTERRUPTED, import_torch, user_errors, warn
from nestdsl.diagnostics import fail
from nestdsl.train.config import TrainConfig, unused_options

if TYPE_CHECKING:
    from nestdsl.train.engine import TrainResult
    from nestdsl.train.runs import RunRequest

EXAMPLES = """\b
Examples:
  nestdsl train specs/digits_width.nest --epochs 15 --out runs/dw
  nestdsl train specs/digits_width.nest --strategy sgd --data synthetic:512
  nestdsl train specs/digits_width.nest --standalone 2 --out runs/d2
  nestdsl train specs/digits_width.nest --oracle 2 --out runs/oracle-w2
  nestdsl train specs/digits_width.nest --dry-run
  nestdsl train --resume runs/dw
"""

Opt = typer.Option


def _base(annotation: Any) -> Any:
    """The type under ``X | None`` and ``Annotated[X, ...]`` (``PositiveInt | None`` -> int)."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is Annotated:
        return _base(args[0])
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _base(args[0]) if len(args) == 1 else annotation
    return annotation


def _item_type(field: FieldInfo) -> type:
    """The element type of a list field (``list[PositiveInt] | None`` -> int)."""
    item = _base(typing.get_args(_base(field.annotation))[0])
    return item if isinstance(item, type) else str


def _is_list(field: FieldInfo) -> bool:
    return typing.get_origin(_base(field.annotation)) is list


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(field: FieldInfo) -> str:
    """The field's description and its default, as the config would fill it in."""
    text = field.description or ""
    default = field.default
    if default is None:
        return text
    shown = ("on" if default else "off") if isinstance(default, bool) else str(default)
    return f"{text} [default: {shown}]"


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The Typer option of one TrainConfig field: its flag, type and help (with default)."""
    base = _base(field.annotation)
    if base is bool:
        info = Opt(f"{_flag(name)}/--no-{name.replace('_', '-')}", help=_help(field))
        annotation: Any = Annotated[bool | None, info]
    elif _is_list(field):
        noun = "INTS" if _item_type(field) is int else "NUMBERS"
        info = Opt(_flag(name), help=_help(field), metavar=noun)
        annotation = Annotated[str | None, info]
    else:
        kind = base if base in (int, float) else str
        choices = typing.get_args(base) if typing.get_origin(base) is Literal else ()
        metavar = "|".join(choices) or {int: "INT", float: "NUMBER"}.get(kind, "TEXT")
        info = Opt(_flag(name), help=_help(field), metavar=metavar)
        annotation = Annotated[kind | None, info]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


CONFIG_FIELDS: dict[str, FieldInfo] = dict(TrainConfig.model_fields)
"""Every TrainConfig field is a flag of the same name (``batch_size`` -> ``--batch-size``)."""


def _value(name: str, value: object) -> object:
    """A typed flag value as the config field takes it (``"2,1,3"`` -> ``[2, 1, 3]``)."""
    field = CONFIG_FIELDS[name]
    if not _is_list(field):
        return value
    kind = _item_type(field)
    items = [item.strip() for item in str(value).split(",") if item.strip()]
    try:
        return [kind(item) for item in items]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        fail("T001", f"{_flag(name)} expects comma-separated {noun}, got `{value}`")


def train(
    spec: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            file_okay=True,
            dir_okay=False,
            readable=True,
            metavar="SPEC",
            help="The .nest spec to train (optional with --resume: the run keeps a copy).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        Opt(
            "--out",
            "-o",
            metavar="DIR",
            help="Run directory to create: new or empty (default: runs/<spec>-<strategy>-<time>).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        Opt(
            metavar="DIR",
            help="Continue the run in DIR from its last checkpoint.",
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[int, Opt(min=1, metavar="N", help="Local processes (torch.distributed).")] = 1,
    dry_run: Annotated[
        bool,
        Opt(
            "--dry-run",
            help="Check spec, options, data and run directory, print the plan, train nothing.",
        ),
    ] = False,
    json_output: Annotated[
        bool, Opt("--json", help="Print the results as JSON on stdout instead of a table.")
    ] = False,
    quiet: Annotated[
        bool, Opt("--quiet", "-q", help="No banner, progress or epoch lines.")
    ] = False,
    **options: Any,
) -> None:
    """Train SPEC with a gradient strategy and print a per-stage results table."""
    if spec is None and resume is None:
        raise typer.BadParameter("give the spec to train, or --resume RUN_DIR", param_hint="SPEC")
    with user_errors():
        import_torch()
        from nestdsl.train.runs import request_run

        given = {name: _value(name, value) for name, value in options.items() if value is not None}
        request = request_run(spec, given, out=out, resume=resume)
        warn(unused_options(request.config, set(given)))
        if request.finished:
            typer.echo(
                f"note: {request.run_dir} has finished all its epochs; its results:", err=True
            )
        if dry_run:
            _dry_run(request)
            return
        _run(request, nproc, quiet, json_output)


def _dry_run(request: RunRequest) -> None:
    from nestdsl.train.launch import plan_run

    plan = plan_run(request.spec, request.config, request.run_dir, resume=request.resume)
    typer.echo("\n".join(plan.lines()))
    typer.echo("dry run: nothing trained, nothing written")


def _run(request: RunRequest, nproc: int, quiet: bool, json_output: bool) -> None:
    from nestdsl.train import distributed
    from nestdsl.train.launch import launch
    from nestdsl.train.runs import RESULTS, resume_hint

    try:
        result = launch(
            nproc,
            request.spec,
            request.config,
            request.run_dir,
            progress=not quiet,
            resume=request.resume,
        )
    except KeyboardInterrupt:
        typer.echo(f"interrupted\n{resume_hint(request.run_dir)}", err=True)
        raise typer.Exit(code=INTERRUPTED) from None
    if not distributed.from_env().is_main:  # under torchrun every rank runs this command
        return
    if json_output:
        document = json.loads((request.run_dir / RESULTS).read_text(encoding="utf-8"))
        typer.echo(json.dumps(document, indent=2))
        return
    config = request.config
    _print_table(result, plain=config.standalone is not None or config.oracle is not None)


def _print_table(result: TrainResult, *, plain: bool) -> None:
    """Per-stage tables on stdout (validation, then test), in `compile`'s number format, and
    what the run covered: epochs, the data split and, for an Oracle, its size beside D_k's."""
    from rich.console import Console
    from rich.table import Table

    from nestdsl import glossary
    from nestdsl.glossary import human

    params = "params" if plain else "anytime params"
    console = Console(soft_wrap=True)
    for title, rows in (("validation results", result.stages), ("test results", result.test)):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for name in ("stage", "label", "top-1", "top-5", params):
            table.add_column(name, justify="left" if name == "label" else "right")
        for metrics, count in zip(rows, result.params, strict=False):
            table.add_row(
                str(metrics.stage),
                metrics.label,
                f"{100 * metrics.top1:.2f}%",
                f"{100 * metrics.top5:.2f}%",
                human(count),
            )
        console.print(table)
    console.print(glossary.PARAMS if plain else glossary.ANYTIME_PARAMS, highlight=False)
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
            f"oracle of stage {o.stage} ({o.label}): {o.params:,} params, {o.flops:,} MACs; "
            f"nested D_{o.stage}: {o.nested_params:,} params, {o.nested_flops:,} MACs",
            highlight=False,
            markup=False,
        )
    if result.run_dir is not None:
        console.print(f"run dir: {result.run_dir}", highlight=False, markup=False)


def _with_config_options(command: Any) -> Any:
    """Give ``command`` one keyword option per TrainConfig field (Typer reads the signature)."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    derived = [_option(name, field) for name, field in CONFIG_FIELDS.items()]
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed] + derived
    command.__signature__ = inspect.Signature(parameters, return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


def register(app: typer.Typer) -> None:
    """Add the `train` command to the nestdsl application."""
    app.command("train", epilog=EXAMPLES)(_with_config_options(train))
