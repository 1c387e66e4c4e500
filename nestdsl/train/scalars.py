"""Optional TensorBoard scalars next to metrics.jsonl (which is always written)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from nestdsl.diagnostics import fail
from nestdsl.train.records import PER_STAGE_SERIES, EpochRecord


class ScalarLog(Protocol):
    def add(self, record: EpochRecord) -> None: ...
    def close(self) -> None: ...


class _NoScalars:
    def add(self, record: EpochRecord) -> None:
        return None

    def close(self) -> None:
        return None


class _TensorBoard:
    """One scalar per stage and metric, tagged ``val_top1/w2``, stepped by epoch."""

    def __init__(self, directory: Path, labels: list[str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))
        self.labels = labels

    def add(self, record: EpochRecord) -> None:
        epoch = record.epoch
        self.writer.add_scalar("lr", record.lr, epoch)
        for key in PER_STAGE_SERIES:
            for label, value in zip(self.labels, record.series(key), strict=False):
                if value is not None:
                    self.writer.add_scalar(f"{key}/{label}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def check_log(mode: str) -> None:
    """Fail before training, not after the first epoch, when TensorBoard is missing."""
    if mode == "tensorboard" and not tensorboard_available():
        fail(
            "T012",
            "--log tensorboard needs the `tensorboard` package, which is not installed",
            help="pip install 'nestdsl[tensorboard]', or use --log jsonl (metrics.jsonl is "
            "always written)",
        )


def open_scalars(mode: str, run_path: Path | None, labels: list[str]) -> ScalarLog:
    if mode != "tensorboard" or run_path is None:
        return _NoScalars()
    check_log(mode)
    return _TensorBoard(run_path / "tensorboard", labels)
