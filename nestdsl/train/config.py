"""`TrainConfig`: every knob of a training run in one validated, serialisable record.

The config is written verbatim to ``RUN_DIR/config.json`` and compared on ``--resume``, so it
holds only JSON-friendly values and rejects unknown keys (a typo in a config file must fail,
not silently fall back to a default). Checks that need the network (number of stages) or the
machine (is there a GPU?) live in :mod:`nestdsl.train.checks`, which raises ``NestError``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from nestdsl.diagnostics import Diagnostic, NestError

ScheduleName = Literal["exp", "cosine", "step", "constant"]
OptimizerName = Literal["sgd", "adamw"]
AmpMode = Literal["auto", "bf16", "fp16", "off"]
LogMode = Literal["jsonl", "tensorboard"]

EXP_FINAL_RATIO = 0.008
"""The paper's CIFAR endpoints, 0.1 → 0.0008 over 200 epochs: the final LR is 0.8% of the
initial one. The paper gives only the endpoints; the exponential curve between them is
nestdsl's choice."""

RUNTIME_FIELDS: frozenset[str] = frozenset(
    {"device", "amp", "channels_last", "workers", "log", "checkpoint_every"}
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

    data: str = "digits"
    augment: bool = True
    strategy: str = "osgd"
    priority: list[int] | None = None
    importances: list[float] | None = None
    norm_constant: float = Field(0.5, gt=0)
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    optimizer: OptimizerName = "sgd"
    lr: float = Field(0.1, gt=0)
    lr_final: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    schedule: ScheduleName = "cosine"
    milestones: list[PositiveInt] | None = None
    gamma: float = Field(0.1, gt=0)
    seed: int = 0
    device: str = "auto"
    amp: AmpMode = "auto"
    channels_last: bool | None = None
    workers: int = Field(0, ge=0)
    standalone: PositiveInt | None = None
    oracle: PositiveInt | None = None
    checkpoint_every: PositiveInt = 1
    log: LogMode = "jsonl"

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
