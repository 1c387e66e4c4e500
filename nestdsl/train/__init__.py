"""Training anytime networks: the engine behind ``nestdsl train``, usable from Python.

>>> from nestdsl.train import TrainConfig, train
>>> result = train("specs/digits_width.nest", TrainConfig(epochs=2), run_dir="runs/dw")
>>> [(m.label, round(m.top1, 3)) for m in result.stages]  # doctest: +SKIP

See docs/training.md ("Runs, checkpoints and resuming") for the run directory, resumption,
devices and distributed training.
"""

from nestdsl.evaluate import StageMetrics, evaluate
from nestdsl.train.config import TrainConfig, make_config
from nestdsl.train.distributed import DistContext
from nestdsl.train.engine import Phase, TrainResult, plan_phases, total_epochs, train
from nestdsl.train.launch import launch
from nestdsl.train.records import EpochRecord
from nestdsl.train.runs import RunDir

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
