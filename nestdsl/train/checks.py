"""Checks of a TrainConfig against the network, raising ``NestError`` with a suggestion.

Pydantic validates each field on its own; what depends on the compiled network (how many
stages it has) or on the optimizer package (which strategies exist) is checked here, before
any data is loaded, so a typo costs a second, not an epoch.

Error codes of the training layer (``T0xx``, documented in ``docs/training.md``):
T001 invalid option value, T002 unknown strategy, T003 bad priority, T004 bad importances,
T005 bad standalone stage, T006 device not available, T007 AMP mode not available,
T008 missing or unreadable checkpoint, T009 resume with a different spec or config,
T010 run directory already holds a run, T011 data and network disagree, T012 optional
package missing, T014 distributed setup, T017 --oracle with --standalone or without a spec,
T018 a loss became NaN or infinite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from nestdsl.diagnostics import Diagnostic, NestError
from nestdsl.train.config import TrainConfig

if TYPE_CHECKING:
    from nestdsl.data import DataSplit

SUM_OF_LOSSES = "sgd-sum"
"""Eq. 1 on the *sum* of the stage losses, not their mean: a control for OSGD, which sums its
orthogonalized gradients (docs/training.md). The optimizer package lists it with its
strategies; the training loop runs it as ``sgd`` with every loss multiplied by n."""


def fail(code: str, message: str, help: str | None = None) -> NoReturn:
    """Raise a training error the CLI renders as a diagnostic (no span: it is not the spec)."""
    raise NestError([Diagnostic(code=code, message=message, help=help)])


OPTION_CODES: dict[str, str] = {"strategy": "T002", "priority": "T003", "importances": "T004"}
"""The training error code for each option the optimizer package rejects (else T001)."""

OPTION_HELP: dict[str, Callable[[int], str]] = {
    "priority": lambda n: (
        "list every stage once, highest priority first, e.g. --priority "
        + ",".join(map(str, range(1, n + 1)))
    ),
    "importances": lambda n: "e.g. --importances " + ",".join(["1"] * n),
}
"""Flag-level help for options whose optimizer error carries none."""


def check_config(config: TrainConfig, num_stages: int) -> None:
    """Everything about ``config`` that can be judged from the network's stage count."""
    # Imported here: the CLI imports this module for `train --help`, which must not load torch.
    from nestdsl.optim import OptionError, require_available, resolve_options

    if config.oracle is not None and config.standalone is not None:
        fail(
            "T017",
            "--oracle and --standalone both choose the network to train; give one",
            help="--standalone K trains D_k cut out of the nested network, --oracle K an "
            "independent network of D_k's size",
        )
    # --standalone and --oracle train one network with plain SGD: the strategy is moot, the
    # rest is checked.
    trains_nested = config.standalone is None and config.oracle is None
    strategy = config.strategy if trains_nested else "sgd"
    try:
        options = resolve_options(
            strategy, num_stages, config.priority, config.importances, config.norm_constant
        )
        require_available(options.strategy)
    except OptionError as error:
        help = error.help or OPTION_HELP.get(error.field, lambda n: "")(num_stages) or None
        fail(OPTION_CODES.get(error.field, "T001"), error.message, help=help)
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
