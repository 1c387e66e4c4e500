"""Gradient combination for anytime networks (paper §4): SGD, NormSGD, OSGD, OSGD-norm, greedy.

`combine` is the pure (n, d) → d reference form; `fill_grad` is the training-step helper that
back-propagates each stage's loss once, combines the per-task gradients through their float64
Gram matrix and writes the direction into `.grad` for any torch optimizer.
"""

from nestdsl.optim.coefficients import DEPENDENCE_RTOL
from nestdsl.optim.combine import combine
from nestdsl.optim.errors import OptionError
from nestdsl.optim.mtl import MTL_STRATEGIES, require_available, torchjd_available
from nestdsl.optim.stage_grads import (
    FlatGradients,
    GradReport,
    Pending,
    PendingDirection,
    Reduce,
    fill_grad,
    stage_backward,
    unflatten,
)
from nestdsl.optim.strategies import (
    BASE_STRATEGIES,
    CONTROLS,
    STRATEGIES,
    CombineOptions,
    resolve_options,
)

__all__ = [
    "BASE_STRATEGIES",
    "CONTROLS",
    "DEPENDENCE_RTOL",
    "MTL_STRATEGIES",
    "STRATEGIES",
    "CombineOptions",
    "FlatGradients",
    "GradReport",
    "OptionError",
    "Pending",
    "PendingDirection",
    "Reduce",
    "combine",
    "fill_grad",
    "require_available",
    "resolve_options",
    "stage_backward",
    "torchjd_available",
    "unflatten",
]
