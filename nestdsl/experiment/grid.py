"""GRID.toml: what an experiment trains, read into a checked pydantic model.

A grid names the specs, the strategies, the seeds and the shared training settings; the
runner (:mod:`nestdsl.experiment.runner`) expands it into one run per cell. Example::

    [grid]
    name = "digits"
    seeds = [0, 1, 2]
    strategies = ["greedy", "sgd", "osgd", "sgd-norm", "osgd-norm"]

    [train]                  # any TrainConfig field but the ones a cell sets
    data = "digits"
    epochs = 6
    lr = 0.1

    [[specs]]
    path = "../specs/digits_width.nest"   # relative to the grid file
    oracle = true                         # also the Oracle of every stage (--oracle k)
    priorities = [[2, 1, 3]]              # extra OSGD priority orders

Unknown keys are refused (a typo must not silently fall back to a default), and every error
names the file and line of the offending key (E930-E933), since TOML readers keep no positions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nestdsl.diagnostics import Diagnostic, NestError, Span, fail

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there only)
    import tomli as tomllib

PAPER_STRATEGIES: tuple[str, ...] = ("greedy", "sgd", "osgd", "sgd-norm", "osgd-norm")
"""The paper's five strategies, in its tables' column order."""

CELL_FIELDS: frozenset[str] = frozenset({"strategy", "seed", "oracle", "standalone", "priority"})
"""TrainConfig fields the runner sets per cell, so ``[train]`` may not set them."""


class GridInfo(BaseModel):
    """The ``[grid]`` table: the experiment's name, seeds and default strategies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Names the output tables.")
    seeds: list[int] = Field(min_length=1, description="Every cell is trained once per seed.")
    strategies: list[str] = Field(
        default_factory=lambda: list(PAPER_STRATEGIES),
        min_length=1,
        description="Strategies of every spec that does not list its own.",
    )


class SpecEntry(BaseModel):
    """One ``[[specs]]`` entry: a spec and which of its variants to train."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="The .nest file, relative to the grid file.")
    strategies: list[str] | None = Field(None, description="Overrides [grid] strategies.")
    oracle: bool = Field(False, description="Also train the Oracle of every stage.")
    standalone: bool = Field(False, description="Also train every D_k alone.")
    priorities: list[list[int]] = Field(
        default_factory=list, description="Extra OSGD priority orders (highest first)."
    )
    baseline: str | None = Field(
        None, description="The spec (file name, no suffix) this design is compared with."
    )

    @field_validator("priorities")
    @classmethod
    def _permutations(cls, orders: list[list[int]]) -> list[list[int]]:
        for order in orders:
            if sorted(order) != list(range(1, len(order) + 1)):
                raise ValueError(f"{order} is not an order of the stages 1..{len(order)}")
        return orders


class Grid(BaseModel):
    """A whole GRID.toml. ``train`` holds TrainConfig fields, checked by :func:`load_grid`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: GridInfo
    train: dict[str, Any] = Field(default_factory=dict)
    specs: list[SpecEntry] = Field(min_length=1)
    source: Path = Field(Path("GRID.toml"), exclude=True)
    """The file the grid was read from; spec paths are relative to its folder."""

    def spec_path(self, entry: SpecEntry) -> Path:
        return (self.source.parent / entry.path).resolve()

    def strategies(self, entry: SpecEntry) -> list[str]:
        return entry.strategies if entry.strategies is not None else self.grid.strategies


_HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([\w-]+)\s*=")


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line numbers (1-based) of the tables and keys of a TOML text, by pydantic location.

    ``[[specs]]`` headers count up, so the second entry's ``path`` is ``("specs", 1, "path")``.
    Only the forms a grid uses are recognised (headers, ``key =`` lines); that is enough to
    point an error at the line a user has to change.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[str, int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = (name, counts[name])
            else:
                table = (name,)
            lines.setdefault(table, number)
            lines.setdefault(table[:1], number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, key.group(1)), number)
    return lines


def _span(path: Path, line: int) -> Span:
    return Span(file=str(path), line=line, column=1, end_line=line, end_column=1)


def _locate(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int:
    """The line of ``loc`` or of its nearest enclosing key or table (1 when none is known)."""
    for size in range(len(loc), 0, -1):
        if loc[:size] in lines:
            return lines[loc[:size]]
    return 1


def load_grid(path: str | Path) -> Grid:
    """Read and check a GRID.toml; every problem in it is one diagnostic with its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        fail("E930", f"cannot read the grid file `{path}`: {error.strerror or error}")
    try:
        return _checked(path, text)
    except NestError as error:  # shown with the grid's lines, like a spec's errors
        raise NestError(error.diagnostics, {str(path): text}) from None


def _checked(path: Path, text: str) -> Grid:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        where = re.search(r"line (\d+)", str(error))
        line = int(where.group(1)) if where else 1
        fail(
            "E930", f"`{path}` is not valid TOML: {str(error).split(' (at')[0]}", _span(path, line)
        )
    lines = key_lines(text)
    try:
        grid = Grid.model_validate({**data, "source": path})
    except ValidationError as error:
        raise NestError(
            [
                Diagnostic(
                    code="E931",
                    message=f"`{'.'.join(map(str, e['loc']))}`: {e['msg']}",
                    span=_span(path, _locate(lines, tuple(e["loc"]))),
                )
                for e in error.errors()
            ]
        ) from None
    _check_train(grid, lines)
    _check_specs(grid, lines)
    return grid


def _check_train(grid: Grid, lines: dict[tuple[str | int, ...], int]) -> None:
    """``[train]`` must be valid TrainConfig fields, none of them set per cell (E932)."""
    from nestdsl.optim.strategies import BASE_STRATEGIES, CONTROLS
    from nestdsl.train.config import TrainConfig

    problems: list[Diagnostic] = []
    for key in sorted(CELL_FIELDS & set(grid.train)):
        problems.append(
            Diagnostic(
                code="E932",
                message=f"`train.{key}` is set per cell by the grid",
                span=_span(grid.source, _locate(lines, ("train", key))),
                help="list strategies, seeds, `oracle`, `standalone` or `priorities` instead",
            )
        )
    try:
        TrainConfig.model_validate({k: v for k, v in grid.train.items() if k not in CELL_FIELDS})
    except ValidationError as error:
        problems += [
            Diagnostic(
                code="E932",
                message=f"`train.{'.'.join(map(str, e['loc']))}`: {e['msg']}",
                span=_span(grid.source, _locate(lines, ("train", *e["loc"]))),
            )
            for e in error.errors()
        ]
    known = BASE_STRATEGIES + CONTROLS
    for index, entry in enumerate(grid.specs):
        for name in grid.strategies(entry):
            if name not in known:
                where = ("specs", index, "strategies") if entry.strategies else ("grid",)
                problems.append(
                    Diagnostic(
                        code="E932",
                        message=f"unknown strategy `{name}`",
                        span=_span(grid.source, _locate(lines, where)),
                        help="choose from " + ", ".join(f"`{s}`" for s in known),
                    )
                )
    if problems:
        raise NestError(problems)


def _check_specs(grid: Grid, lines: dict[tuple[str | int, ...], int]) -> None:
    """Every spec must exist and load, its priority orders fit its stages and its baseline
    be another spec of the grid (E933)."""
    from nestdsl.ir import build_ir
    from nestdsl.load import load

    problems: list[Diagnostic] = []
    names = {grid.spec_path(e).stem for e in grid.specs}
    for index, entry in enumerate(grid.specs):
        if entry.baseline is not None and entry.baseline not in names:
            problems.append(
                Diagnostic(
                    code="E933",
                    message=f"baseline `{entry.baseline}` is not a spec of this grid",
                    span=_span(grid.source, _locate(lines, ("specs", index, "baseline"))),
                    help="name another [[specs]] entry by its file name without `.nest`",
                )
            )
        spec = grid.spec_path(entry)
        span = _span(grid.source, _locate(lines, ("specs", index, "path")))
        if not spec.is_file():
            problems.append(
                Diagnostic(
                    code="E933",
                    message=f"no spec at `{spec}`",
                    span=span,
                    help="spec paths are relative to the grid file's folder",
                )
            )
            continue
        try:
            stages = len(build_ir(load(spec)).stage_labels)
        except NestError as error:
            problems.append(
                Diagnostic(
                    code="E933",
                    message=f"the spec `{entry.path}` does not load",
                    span=span,
                    notes=tuple(f"{d.code}: {d.message}" for d in error.diagnostics),
                )
            )
            continue
        for order in entry.priorities:
            if len(order) != stages:
                problems.append(
                    Diagnostic(
                        code="E933",
                        message=f"priority order {order} has {len(order)} stages; "
                        f"`{entry.path}` has {stages}",
                        span=_span(grid.source, _locate(lines, ("specs", index, "priorities"))),
                    )
                )
    if problems:
        raise NestError(problems)
