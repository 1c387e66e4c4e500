"""Checks of a TrainConfig against the network, raising ``NestError`` with a suggestion.

Pydantic validates each field on its own; what depends on the compiled network (how many
stages it has) or on the optimizer package (which strategies exist) is checked here, before
any data is loaded, so a typo costs a second, not an epoch.

Error codes of the training layer (``T0xx``, documented in ``docs/training.md``):
T001 invalid option value, T002 unknown strategy, T003 bad priority, T004 bad importances,
T005 bad standalone stage, T006 device not available, T007 AMP mode not available,
T008 missing or unreadable checkpoint, T009 resume with a different spec or config,
T010 run directory already holds a run, T011 data and network disagree, T012 optional
package missing, T014 distributed setup, T017 --oracle with --standalone or without a spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from nestdsl.diagnostics import Diagnostic, NestError, did_you_mean
from nestdsl.train.config import TrainConfig

if TYPE_CHECKING:
    from nestdsl.data import DataSplit

MTL_PREFIX = "mtl:"

SUM_OF_LOSSES = "sgd-sum"
"""Eq. 1 on the *sum* of the stage losses, not their mean: a control for OSGD, which sums its
orthogonalized gradients (docs/training.md). The training loop adds it to the optimizer's
strategies by running ``sgd`` with every loss multiplied by n."""

TRAINING_STRATEGIES: tuple[str, ...] = (SUM_OF_LOSSES,)
"""Strategies the training loop adds to the optimizer's."""


def fail(code: str, message: str, help: str | None = None) -> NoReturn:
    """Raise a training error the CLI renders as a diagnostic (no span: it is not the spec)."""
    raise NestError([Diagnostic(code=code, message=message, help=help)])


def known_strategies() -> tuple[str, ...]:
    """Strategies usable here, as the optimizer package reports them."""
    from nestdsl.optim import STRATEGIES

    return tuple(STRATEGIES) + TRAINING_STRATEGIES


def check_config(config: TrainConfig, num_stages: int) -> None:
    """Everything about ``config`` that can be judged from the network's stage count."""
    if config.oracle is not None and config.standalone is not None:
        fail(
            "T017",
            "--oracle and --standalone both choose the network to train; give one",
            help="--standalone K trains D_k cut out of the nested network, --oracle K an "
            "independent network of D_k's size",
        )
    strategies = known_strategies()
    trains_nested = config.standalone is None and config.oracle is None
    if trains_nested and config.strategy not in strategies:
        if config.strategy.startswith(MTL_PREFIX):
            help = "the `mtl:*` strategies need torchjd: pip install 'nestdsl[mtl]'"
        else:
            choices = f"choose one of: {', '.join(strategies)}"
            help = did_you_mean(config.strategy, strategies) or choices
        fail("T002", f"unknown training strategy `{config.strategy}`", help=help)
    if config.strategy.startswith(MTL_PREFIX) and (config.priority or config.importances):
        fail(
            "T001",
            f"strategy `{config.strategy}` weights the tasks itself and takes no "
            "--priority or --importances",
        )
    stages = list(range(1, num_stages + 1))
    if config.priority is not None and sorted(config.priority) != stages:
        fail(
            "T003",
            f"priority {','.join(map(str, config.priority))} is not a permutation of the "
            f"stage numbers 1..{num_stages}",
            help=f"list every stage once, highest priority first, e.g. "
            f"--priority {','.join(map(str, stages))}",
        )
    if config.importances is not None and (
        len(config.importances) != num_stages
        or any(k < 0 for k in config.importances)
        or sum(config.importances) <= 0
    ):
        fail(
            "T004",
            f"importances need {num_stages} non-negative values, not all zero; "
            f"got {config.importances}",
            help=f"e.g. --importances {','.join(['1'] * num_stages)}",
        )
    if config.standalone is not None and config.standalone > num_stages:
        fail(
            "T005",
            f"--standalone {config.standalone}: the network has only {num_stages} stages",
            help=f"choose a stage in 1..{num_stages}",
        )


def check_classes(data: DataSplit, classes: int) -> None:
    """The network must predict as many classes as the data source has (T011)."""
    if classes != data.num_classes:
        fail(
            "T011",
            f"data source `{data.name}` has {data.num_classes} classes but the network "
            f"predicts {classes}",
            help=f"set the spec's head to {data.num_classes} classes",
        )
