"""Where a run executes: device choice, mixed precision, memory format, determinism.

Everything machine-dependent is resolved once into a :class:`Runtime`, so the loop itself has
no device branches: it enters ``runtime.autocast()`` and moves batches with
``runtime.to_device``. A device the user asked for but the machine lacks is a ``NestError``,
never a silent fallback to CPU (a 100× slower run is worse than an error).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nestdsl.diagnostics import fail
from nestdsl.evaluate import autocast
from nestdsl.train.config import TrainConfig

_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Runtime:
    """The resolved execution settings of one process."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def uses_scaler(self) -> bool:
        """fp16 needs loss scaling (its exponent range underflows small gradients); bf16 not."""
        return self.amp_dtype == torch.float16

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self, *, cache: bool = True) -> contextlib.AbstractContextManager[object]:
        """Mixed-precision region for forward passes and losses (a no-op when AMP is off);
        ``cache=False`` casts weights afresh at each use, which a CUDA graph capture needs."""
        return autocast(self.device, self.amp_dtype, cache=cache)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """Move a batch of images, in channels_last layout when that is on."""
        images = images.to(self.device, non_blocking=self.pin_memory)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


PARALLEL_RUNS_ENV = "NESTDSL_PARALLEL_RUNS"
"""How many independent training runs share this machine (default 1): each takes its share."""

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2 CPU quota of this process's container: ``QUOTA PERIOD`` or ``max PERIOD``."""


def cgroup_cpus(path: Path | None = None) -> int | None:
    """CPUs a cgroup v2 quota grants (rounded up), or None when there is no quota.

    A container limited to 2 CPUs on a 64-core host still sees 64 in its affinity mask;
    threads beyond the quota are throttled, not run.
    """
    try:
        quota, period = (path or CPU_MAX).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a container's or taskset's limit),
    which ``os.cpu_count()`` ignores, capped by the cgroup CPU quota."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    quota = cgroup_cpus()
    return min(cpus, quota) if quota is not None else cpus


def _env_int(name: str) -> int | None:
    """A positive integer from the environment, or None when unset or not one."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def thread_budget(processes: int = 1, workers: int = 0) -> int:
    """Intra-op threads for one of `processes` concurrent training processes, each feeding
    from `workers` loader processes: the available CPUs shared out so that together they never
    oversubscribe them (OpenMP threads spinning on a shared core cost far more than they save
    in the many small kernels of a nested network).

    ``NESTDSL_PARALLEL_RUNS=R`` says that R independent runs share the machine, so each takes
    1/R of it; ``OMP_NUM_THREADS``, when the user sets it, wins over everything.
    """
    chosen = _env_int("OMP_NUM_THREADS")
    if chosen is not None:
        return chosen
    runs = _env_int(PARALLEL_RUNS_ENV) or 1
    return max(1, available_cpus() // (max(1, processes) * runs) - workers)


@contextlib.contextmanager
def limited_threads(processes: int = 1, workers: int = 0) -> Iterator[int]:
    """Run a block with intra-op threads lowered to :func:`thread_budget`, then restore them.

    Never raises the count: a caller that chose fewer threads (an experiment runner running
    several trainings at once) keeps its choice.
    """
    before = torch.get_num_threads()
    threads = min(before, thread_budget(processes, workers))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    """``auto`` → this process's GPU if there is one, else CPU; ``cuda[:N]`` must exist.

    With several processes on this machine each takes the GPU of its local rank: a fixed
    ``cuda:N`` would put them all on one GPU, and a rank beyond the GPUs would share one.
    """
    match = _DEVICE.match(name.strip().lower())
    if match is None:
        fail(
            "T001",
            f"unknown device `{name}`",
            help="use --device auto, cpu, cuda or cuda:N",
        )
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "auto" and not available:
        return torch.device("cpu")
    if kind == "auto" and local_rank >= available:
        fail(
            "T014",
            f"process with local rank {local_rank} has no GPU of its own: this machine has "
            f"{available}, and two processes on one GPU would contend for it",
            help=f"start at most {available} processes per machine, or use --device cpu",
        )
    if kind == "auto":
        return torch.device("cuda", local_rank)
    if index is not None and local_processes > 1:
        fail(
            "T014",
            f"device `{name}` names one GPU for all {local_processes} processes on this "
            "machine, which would contend for it",
            help="use --device cuda (each process takes the GPU of its local rank)",
        )
    if index is None and local_processes > 1 and local_rank >= available:
        fail(
            "T014",
            f"process with local rank {local_rank} has no GPU of its own: this machine has "
            f"{available}",
            help=f"start at most {available} processes per machine",
        )
    number = int(index) if index is not None else local_rank
    if number >= available:
        have = f"{available} CUDA device(s)" if available else "no CUDA device"
        fail(
            "T006",
            f"device `{name}` was requested but this machine has {have}"
            + ("" if torch.backends.cuda.is_built() else " (this PyTorch build has no CUDA)"),
            help="use --device cpu, or --device auto to take a GPU only when one is present",
        )
    return torch.device("cuda", number)


BF16_CAPABILITY = (8, 0)
"""Compute capability from which GPUs run bf16 natively (Ampere); older ones emulate it."""


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The (major, minor) compute capability of a CUDA device."""
    return torch.cuda.get_device_capability(device)


def _amp_auto(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU computes it natively, else fp16 with loss scaling; CPU: no AMP.

    ``torch.cuda.is_bf16_supported()`` also counts emulated bf16, which is far slower than
    fp16 on pre-Ampere GPUs, so the decision is made from the compute capability.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if cuda_capability(device) >= BF16_CAPABILITY else torch.float16


def _amp_fp16(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        fail(
            "T007",
            "--amp fp16 needs a CUDA device (fp16 loss scaling is a GPU technique)",
            help="use --amp bf16 on CPU, or --amp off",
        )
    return torch.float16


_AMP: dict[str, Callable[[torch.device], torch.dtype | None]] = {
    "auto": _amp_auto,
    "bf16": lambda device: torch.bfloat16,
    "fp16": _amp_fp16,
    "off": lambda device: None,
}


def resolve_runtime(config: TrainConfig, local_rank: int = 0, local_processes: int = 1) -> Runtime:
    """Device, AMP dtype and memory format for this process.

    On a GPU cuDNN may benchmark its convolution algorithms: a run's shapes are static (the
    training batch, the last partial batch and the evaluation batch: a few shapes, each
    tuned once).
    """
    device = resolve_device(config.device, local_rank, local_processes)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    channels_last = (
        config.channels_last if config.channels_last is not None else device.type == "cuda"
    )
    return Runtime(device=device, amp_dtype=_AMP[config.amp](device), channels_last=channels_last)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the duration of a CPU run, restoring the caller's setting.

    On CUDA deterministic kernels need ``CUBLAS_WORKSPACE_CONFIG`` and cost speed, and GPU runs
    are not promised bit-exact, so the flag is only switched on for CPU.
    """
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    _set_deterministic(True, warn_only=True)
    try:
        yield
    finally:
        _set_deterministic(before, warn_only=warn_only)


def _set_deterministic(mode: bool, *, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its side import of torch._inductor.

    The public function also sets the inductor config flag, importing inductor (seconds of
    start-up) for a run that never compiles; when inductor is loaded anyway, use it as is.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if "torch._inductor.config" in sys.modules or setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)
