"""Progress display on stderr: an epoch bar and a step bar, plus one summary line per epoch.

Bars are transient and switched off when stderr is not a terminal, so logs and CI output hold
only the per-epoch lines (and stdout stays clean for the results table).
"""

from __future__ import annotations

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

    def note(self, message: str) -> None:
        if self.enabled:
            self._bars.console.print(message, highlight=False, markup=False, soft_wrap=True)
