"""Checks of a TrainConfig against the network, raising ``NestError`` with a suggestion.

Pydantic validates each field on its own; what depends on the compiled network (how many
stages it has) or on the optimizer package (which strategies exist) is checked here, before
any data is loaded, so a typo costs a second, not an epoch.

Error codes of the training layer (``T0xx``, documented in ``docs/training.md``):
T001 invalid option value, T002 unknown strategy, T003 bad priority, T004 bad importances,
T005 bad standalone stage, T006 device not available, T007 AMP mode not available,
T008 missing or unreadable checkpoint, T009 resume with a different spec or config,
T010 run directory already holds a run, T011 data and network disagree, T012 optional
package missing, T013 too few epochs for greedy, T014 distributed setup, T015 a loss
became NaN or infinite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from nestdsl.diagnostics import Diagnostic, NestError
from nestdsl.optim import OptionError, require_available, resolve_options
from nestdsl.train.config import TrainConfig


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
    # --standalone trains one stage with plain SGD: its strategy is moot, the rest is checked.
    strategy = config.strategy if config.standalone is None else "sgd"
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
    if config.strategy == "greedy" and config.standalone is None and config.epochs < num_stages:
        fail(
            "T013",
            f"greedy training splits the {config.epochs} epochs over {num_stages} stages; "
            "every stage needs at least one",
            help=f"use --epochs {num_stages} or more",
        )
