"""Progress display on stderr: a start-up banner, an epoch bar and a step bar, plus one
summary line per epoch.

Bars are transient and switched off when stderr is not a terminal, so logs and CI output hold
only the banner and the per-epoch lines (and stdout stays clean for the results table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nestdsl.train.config import TrainConfig, task_graph_of
from nestdsl.train.records import EpochRecord


def strategy_text(config: TrainConfig, device: str) -> str:
    """What trains, in the banner's words: the strategy (and, for per-task strategies, the
    graph their gradients go through on ``device``, a device type), the standalone network or
    an Oracle."""
    if config.oracle:
        return f"Oracle of stage {config.oracle}"
    if config.standalone:
        return f"standalone D_{config.standalone}"
    graph = task_graph_of(config, device)
    return config.strategy if graph is None else f"{config.strategy} ({graph} graph)"


@dataclass(frozen=True)
class RunPlan:
    """What a run is about to do: printed before the first epoch and by ``--dry-run``."""

    spec: str | None
    labels: Sequence[str]
    strategy: str
    device: str
    data: str
    train_size: int
    val_size: int
    epochs: int
    epochs_done: int
    run_dir: Path | None
    compiled: str | None = None
    """What --torch-compile compiles (None: nothing)."""
    graphs: str | None = None
    """What --cuda-graphs replays (None: nothing)."""

    def lines(self) -> list[str]:
        """The banner, one fact per line, so a log shows what produced the lines after it."""
        stages = " ".join(self.labels)
        left = self.epochs - self.epochs_done
        epochs = f"{self.epochs}" if not self.epochs_done else f"{self.epochs} ({left} to go)"
        return [
            f"spec      {self.spec or '(a Python module)'}",
            f"stages    {len(self.labels)}: {stages}",
            f"strategy  {self.strategy}",
            f"device    {self.device}",
            *([f"compiled  {self.compiled}"] if self.compiled else []),
            *([f"graphs    {self.graphs}"] if self.graphs else []),
            f"data      {self.data}: {self.train_size} training, {self.val_size} validation",
            f"epochs    {epochs}",
            f"run dir   {self.run_dir if self.run_dir is not None else '(none: nothing saved)'}",
        ]


def epoch_line(record: EpochRecord, labels: Sequence[str], epochs: int) -> str:
    """One finished epoch: learning rate, then per stage (by label) train loss and val top-1."""
    parts = []
    for i, label in enumerate(labels):
        loss = record.train_loss[i] if i < len(record.train_loss) else None
        accuracy = record.val_top1[i] if i < len(record.val_top1) else None
        shown_loss = "-" if loss is None else f"{loss:.3f}"
        shown_top1 = "-" if accuracy is None else f"{100 * accuracy:.1f}%"
        parts.append(f"{label} loss {shown_loss} top-1 {shown_top1}")
    return (
        f"epoch {record.epoch}/{epochs}  lr {record.lr:.4g}  "
        + "  ".join(parts)
        + f"  ({record.time:.1f}s)"
    )


class TrainProgress:
    """Context manager the engine reports to; every method is a no-op when disabled."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not (enabled and self.console.is_terminal),
        )
        self._epochs: TaskID | None = None
        self._steps: TaskID | None = None

    @property
    def active(self) -> bool:
        """Whether bars are drawn (worth computing what they show)."""
        return not self._bars.disable

    def __enter__(self) -> TrainProgress:
        self._bars.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bars.__exit__(kind, error, trace)

    def start_run(self, total_epochs: int, done: int) -> None:
        self._epochs = self._bars.add_task("epochs", total=total_epochs, completed=done, info="")

    def start_epoch(self, description: str, steps: int) -> None:
        if self._epochs is not None:
            self._bars.update(self._epochs, description=description)
        if self._steps is None:
            self._steps = self._bars.add_task("steps", total=steps, info="")
        else:
            self._bars.reset(self._steps, total=steps, info="")

    def step(self, info: str | None = None) -> None:
        if self._steps is not None:
            if info is None:
                self._bars.advance(self._steps)
            else:
                self._bars.update(self._steps, advance=1, info=info)

    def end_epoch(self, summary: str) -> None:
        if self._epochs is not None:
            self._bars.advance(self._epochs)
        if self.enabled:
            self._bars.console.print(summary, highlight=False, markup=False, soft_wrap=True)

    def banner(self, plan: RunPlan) -> None:
        if self.enabled:
            for line in plan.lines():
                self._bars.console.print(line, highlight=False, markup=False, soft_wrap=True)
