"""`TrainConfig`: every knob of a training run in one validated, serialisable record.

The config is written verbatim to ``RUN_DIR/config.json`` and compared on ``--resume``, so it
holds only JSON-friendly values and rejects unknown keys (a typo in a config file must fail,
not silently fall back to a default). Checks that need the network (number of stages) or the
machine (is there a GPU?) live in :mod:`nestdsl.train.config_checks`, which raises ``NestError``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from nestdsl.diagnostics import Diagnostic, NestError

ScheduleName = Literal["exp", "cosine", "step", "constant"]
OptimizerName = Literal["sgd", "adamw"]
AmpMode = Literal["auto", "bf16", "fp16", "off"]
TaskGraph = Literal["auto", "anytime", "joint"]
LogMode = Literal["jsonl", "tensorboard"]

EXP_FINAL_RATIO = 0.008
"""The paper's CIFAR endpoints, 0.1 → 0.0008 over 200 epochs: the final LR is 0.8% of the
initial one. The paper gives only the endpoints; the exponential curve between them is
nestdsl's choice."""

RUNTIME_FIELDS: frozenset[str] = frozenset(
    {
        "device",
        "amp",
        "channels_last",
        "workers",
        "log",
        "checkpoint_every",
        "task_graph",
        "torch_compile",
        "cuda_graphs",
    }
)
"""Fields a resumed run may change: they choose where and how fast it runs, not what it learns
(on CPU; AMP on a GPU changes rounding, which a user switching machines accepts)."""


class TrainConfig(BaseModel):
    """How to train one anytime network.

    The defaults are nestdsl's choices for a quick run on the embedded digits, not the paper's
    recipe: the paper trains CIFAR for 200 epochs with SGD (momentum 0.9) from LR 0.1 decayed
    to 0.0008 (the shape of the decay is not given; ``schedule="exp"`` is nestdsl's
    exponential reading of those endpoints), while the default here is 10 epochs of cosine
    decay to 0. ``epochs`` is per stage for ``greedy`` (Algorithm 1 trains every stage for the
    full budget), so a greedy run has n × epochs epochs. ``oracle=k`` trains the Oracle of
    stage k (an independent, un-pruned network of D_k's widths and depths, see
    :mod:`nestdsl.oracle`) instead of the anytime network.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(
        "digits",
        description="Data source: digits | synthetic[:N] | cifar10:PATH | cifar100:PATH | "
        "imagefolder:PATH (see docs/data.md).",
    )
    augment: bool = Field(True, description="Random crops and flips while training.")
    strategy: str = Field(
        "osgd",
        description="How the per-stage gradients combine: greedy | sgd | sgd-sum | sgd-norm | "
        "osgd | osgd-norm | mtl:* (list them with `nestdsl strategies`).",
    )
    priority: list[int] | None = Field(
        None,
        description="OSGD priority order of the stages, highest first, e.g. 2,1,3 "
        "(default: 1,2,...,n).",
    )
    importances: list[float] | None = Field(
        None, description="Loss importances k_i, e.g. 1,1,2 (default: all 1)."
    )
    norm_constant: float = Field(0.5, gt=0, description="NormSGD constant C (sgd-norm, osgd-norm).")
    epochs: PositiveInt = Field(10, description="Epochs (greedy: per stage, so n × epochs in all).")
    batch_size: PositiveInt = Field(64, description="Global batch size (over all processes).")
    optimizer: OptimizerName = Field("sgd", description="sgd | adamw.")
    lr: float = Field(0.1, gt=0, description="Initial learning rate.")
    lr_final: float | None = Field(
        None,
        ge=0,
        description="Final learning rate (default: 0 for cosine, 0.8% of --lr for exp).",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD).")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay.")
    schedule: ScheduleName = Field(
        "cosine",
        description="LR schedule: cosine | exp (the paper's CIFAR decay) | step | constant.",
    )
    milestones: list[PositiveInt] | None = Field(
        None,
        description="Epochs where `step` multiplies the LR by --gamma, e.g. 30,60 "
        "(default: 50% and 75% of the epochs).",
    )
    gamma: float = Field(0.1, gt=0, description="LR factor at each `step` milestone.")
    seed: int = Field(0, description="Random seed (network, data order, augmentation).")
    device: str = Field("auto", description="auto (CUDA when present) | cpu | cuda | cuda:N.")
    amp: AmpMode = Field("auto", description="Mixed precision: auto | bf16 | fp16 | off.")
    channels_last: bool | None = Field(
        None, description="Channels-last memory format (default: on a GPU only)."
    )
    task_graph: TaskGraph = Field(
        "auto",
        description="Which graph per-task gradients (sgd-norm, osgd, osgd-norm, mtl:*) are "
        "taken through: anytime (stage by stage; stage k's backward traverses only D_k), joint "
        "(one joint forward; every backward traverses the whole joint graph, in fewer and larger "
        "kernels), or auto (the faster one for the device type, see docs/performance.md). Both "
        "give the same gradients.",
    )
    torch_compile: bool = Field(
        False,
        description="Run the joint pass compiled by torch.compile (inductor): the steps that "
        "use it (sgd, sgd-sum, --standalone, --oracle, and per-task strategies through the "
        "joint graph, their default on CUDA) and evaluation; "
        "compiling takes seconds to minutes at the start of the run (see "
        "docs/performance.md). Needs a C++ compiler on a CPU, Triton on a GPU.",
    )
    cuda_graphs: bool = Field(
        False,
        description="Replay each step's forward and backward passes from a CUDA graph "
        "captured after a few eager steps: one launch instead of one per kernel, for "
        "launch-bound networks (one GPU, one process; see docs/training.md).",
    )
    workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    sync_bn: bool = Field(
        False,
        description="Distributed runs: BatchNorm normalizes with the statistics of the "
        "global batch, not each process's share (no effect in one process).",
    )
    standalone: PositiveInt | None = Field(
        None,
        description="Train only D_K, cut out of the nested network (pruned edges kept).",
    )
    oracle: PositiveInt | None = Field(
        None,
        description="Train the Oracle of stage K instead: an independent, un-pruned network "
        "of D_K's widths and depths.",
    )
    checkpoint_every: PositiveInt = Field(1, description="Write a checkpoint every N epochs.")
    log: LogMode = Field("jsonl", description="Metrics log: jsonl | tensorboard.")

    def final_lr(self) -> float:
        """The LR the schedule ends at: ``lr_final`` or the schedule's natural end point."""
        if self.lr_final is not None:
            return self.lr_final
        return self.lr * EXP_FINAL_RATIO if self.schedule == "exp" else 0.0

    def step_milestones(self) -> list[int]:
        """Epochs at which ``step`` multiplies the LR by ``gamma`` (default: 50% and 75%)."""
        if self.milestones is not None:
            return sorted(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})


def make_config(**values: object) -> TrainConfig:
    """Build a TrainConfig, turning pydantic's ValidationError into a user-facing NestError."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise NestError(
            [
                Diagnostic(
                    code="T001",
                    message=f"invalid training option `{'.'.join(map(str, e['loc']))}`: {e['msg']}",
                )
                for e in error.errors()
            ]
        ) from None


def _orthogonalizing(config: TrainConfig) -> bool:
    from nestdsl.optim.strategies import ORTHOGONALIZING

    return _nested(config) and config.strategy in ORTHOGONALIZING


def _normalizing(config: TrainConfig) -> bool:
    from nestdsl.optim.strategies import NORMALIZING

    return _nested(config) and config.strategy in NORMALIZING


def _step_schedule(config: TrainConfig) -> bool:
    return config.schedule == "step"


def _decaying_schedule(config: TrainConfig) -> bool:
    return config.schedule in ("exp", "cosine")


def _joint_strategy(config: TrainConfig) -> bool:
    return _nested(config) and config.strategy != "greedy"


def _per_task(config: TrainConfig) -> bool:
    from nestdsl.optim.strategies import SINGLE_LOSS

    return _nested(config) and config.strategy not in SINGLE_LOSS


TASK_GRAPHS: dict[str, str] = {"cpu": "anytime", "cuda": "joint"}
"""Device type -> the graph ``task_graph="auto"`` takes per-task gradients through (other
device types: ``anytime``). Measured with ``bench/step_costs.py --task-graphs anytime,joint``
(docs/performance.md): on a CPU the anytime graph's smaller backward passes win on most specs;
on a GPU a step is bound by kernel launches, and the joint graph launches fewer."""


def task_graph_of(config: TrainConfig, device: str) -> str | None:
    """The graph per-task gradients go through on ``device`` (a device type): ``anytime`` or
    ``joint``; None when the config takes no per-task gradients."""
    if not _per_task(config):
        return None
    return TASK_GRAPHS.get(device, "anytime") if config.task_graph == "auto" else config.task_graph


def _nested(config: TrainConfig) -> bool:
    """Whether the anytime network trains (not D_K alone, not an Oracle)."""
    return config.standalone is None and config.oracle is None


def greedy_phases(config: TrainConfig) -> bool:
    """Whether training runs Algorithm 1's phases, one per stage (greedy on the anytime
    network); unlike the step's mode, this never depends on the device."""
    return _nested(config) and config.strategy == "greedy"


def _sgd_optimizer(config: TrainConfig) -> bool:
    return config.optimizer == "sgd"


OPTION_APPLIES: dict[str, tuple[Callable[[TrainConfig], bool], str]] = {
    "priority": (_orthogonalizing, "only osgd and osgd-norm order the stages"),
    "norm_constant": (_normalizing, "only sgd-norm and osgd-norm normalise gradients"),
    "importances": (
        _joint_strategy,
        "greedy, --standalone and --oracle train one loss at a time",
    ),
    "strategy": (_nested, "--standalone and --oracle train one network on its own loss"),
    "milestones": (_step_schedule, "only the `step` schedule has milestones"),
    "gamma": (_step_schedule, "only the `step` schedule multiplies the LR by gamma"),
    "lr_final": (_decaying_schedule, "only the `cosine` and `exp` schedules end at a final LR"),
    "task_graph": (_per_task, "only sgd-norm, osgd, osgd-norm and mtl:* take per-task gradients"),
    "momentum": (_sgd_optimizer, "adamw has no momentum setting"),
    "nesterov": (_sgd_optimizer, "adamw has no Nesterov momentum"),
}
"""Options that only some settings read: field -> (does it apply?, why not)."""


def unused_options(config: TrainConfig, given: Collection[str]) -> list[Diagnostic]:
    """Warnings (T016) for options the user gave that the chosen settings ignore."""
    return [
        Diagnostic(
            code="T016",
            severity="warning",
            message=f"--{name.replace('_', '-')} has no effect here: {reason}",
        )
        for name, (applies, reason) in OPTION_APPLIES.items()
        if name in given and not applies(config)
    ]
