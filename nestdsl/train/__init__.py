"""Training anytime networks: the engine behind ``nestdsl train``, usable from Python.

>>> from nestdsl.train import TrainConfig, train
>>> result = train("specs/digits_width.nest", TrainConfig(epochs=2), run_dir="runs/dw")
>>> [(m.label, round(m.top1, 3)) for m in result.stages]  # doctest: +SKIP

See docs/training.md ("Runs, checkpoints and resuming") for the run directory, resumption,
devices and distributed training. Names are imported on first use, so that reading a
:class:`TrainConfig` (what ``nestdsl --help`` does) does not import PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nestdsl.lazy import lazy_names
from nestdsl.train.config import TrainConfig, make_config

if TYPE_CHECKING:
    from nestdsl.evaluate import StageMetrics, evaluate
    from nestdsl.train.distributed import DistContext
    from nestdsl.train.engine import Phase, TrainResult, plan_phases, total_epochs, train
    from nestdsl.train.launch import launch
    from nestdsl.train.records import EpochRecord
    from nestdsl.train.runs import RunDir

_LAZY = {
    "StageMetrics": "nestdsl.evaluate",
    "evaluate": "nestdsl.evaluate",
    "DistContext": "nestdsl.train.distributed",
    "Phase": "nestdsl.train.engine",
    "TrainResult": "nestdsl.train.engine",
    "plan_phases": "nestdsl.train.engine",
    "total_epochs": "nestdsl.train.engine",
    "train": "nestdsl.train.engine",
    "EpochRecord": "nestdsl.train.records",
    "launch": "nestdsl.train.launch",
    "RunDir": "nestdsl.train.runs",
}

__all__ = [
    "DistContext",
    "EpochRecord",
    "Phase",
    "RunDir",
    "StageMetrics",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "launch",
    "make_config",
    "plan_phases",
    "total_epochs",
    "train",
]


lazy_names(__name__, _LAZY)
