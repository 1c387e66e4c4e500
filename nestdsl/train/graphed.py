"""``--cuda-graphs``: training steps whose forward and backward passes replay from a CUDA graph.

On a GPU a step of a small or narrow network is launch-bound: the host spends longer issuing
hundreds of small kernels than the device spends running them (docs/performance.md, "GPU").
A CUDA graph records the kernels once and replays them with one launch. What is recorded is
``backward_step``: the forward pass, the losses and every backward pass, up to the first
point where the step needs a value on the host. The rest runs eagerly after each replay, as
``finish_step`` always does: the per-task strategies read their Gram matrix (the step's one
sync), compute the coefficients and write the direction, and the optimizer (and a GradScaler)
steps. So learning-rate changes, AdamW and fp16 loss scaling need nothing special, and a
replayed step computes what an eager one does.

What a capture fixes, and so what falls back to eager steps:

- the batch's shape, dtype and device: a batch of another shape (the last, smaller batch of
  an epoch) runs eagerly, and the next batch of the captured shape replays again;
- the memory of every parameter and buffer: if one moves (``.to()``, a reloaded state dict
  with ``assign=True``), the step is captured again.

The first ``WARMUP`` steps of a plan with one batch shape run eagerly on a side stream
(kernel selection, lazily created state such as momentum buffers and the layout of the
per-task gradients); the next batch of that shape is captured, and every later one replays.
Counting per shape keeps a short last batch from being the one captured. The graph keeps one
step's activations and gradients in its own memory pool for as long as the plan trains. The
gradients it writes are the parameters' ``.grad`` again after every replay, whatever replaced
them in between (an eager step, or a loop's ``optimizer.zero_grad()``).

Not supported (T020 before the run starts): a CPU device, several processes (their
collectives would need capturing too), and ``--torch-compile`` (which has its own graphs).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from nestdsl.diagnostics import fail
from nestdsl.train.batch_step import (
    Backward,
    StepPlan,
    backward_step,
    distinct,
    finish_step,
    train_step,
)
from nestdsl.train.config import TrainConfig
from nestdsl.train.devices import Runtime

Step = Callable[[Tensor, Tensor], list[Tensor]]
"""One training step on a batch (images, labels) on the device; returns the stage losses."""

WARMUP = 3
"""Eager steps before the capture (PyTorch's own examples warm up with three)."""

_GRAD = operator.attrgetter("grad")


def check_graphable(config: TrainConfig, device: torch.device, processes: int) -> None:
    """T020 before the run starts, instead of a failed capture at its first steps."""
    if not config.cuda_graphs:
        return
    if device.type != "cuda":
        fail(
            "T020",
            f"--cuda-graphs records GPU kernels, and this run trains on {device}",
            help="add --device cuda on a machine with a GPU, or train without --cuda-graphs",
        )
    if processes > 1:
        fail(
            "T020",
            f"--cuda-graphs trains in one process, and this run has {processes}",
            help="train in one process, or without --cuda-graphs",
        )
    if config.torch_compile:
        fail(
            "T020",
            "--cuda-graphs and --torch-compile both change how steps run; choose one",
            help="--torch-compile for fused kernels, --cuda-graphs for fewer launches",
        )


def graphs_text(config: TrainConfig) -> str | None:
    """What ``--cuda-graphs`` does in this run, in the banner's words (None: off)."""
    if not config.cuda_graphs:
        return None
    return f"forward and backward passes replayed from a CUDA graph after {WARMUP} eager steps"


def stepper(plan: StepPlan, runtime: Runtime, cuda_graphs: bool) -> Step:
    """How the run takes ``plan``'s steps: replayed from a CUDA graph, or eagerly."""
    if cuda_graphs:
        return GraphedSteps(plan, runtime)
    return partial(train_step, plan, runtime)


class GraphedSteps:
    """``train_step(plan, runtime, images, labels)`` with ``backward_step`` replayed from a
    CUDA graph for batches shaped like the one it was captured with (see the module
    docstring). Call it as the step itself; the losses it returns are copies."""

    def __init__(self, plan: StepPlan, runtime: Runtime, *, warmup: int = WARMUP) -> None:
        _require_cuda(runtime.device)
        self.plan = plan
        self.runtime = runtime
        self.warmup = warmup
        self.eager_steps = 0
        self.captures = 0
        self.replays = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[Tensor, Tensor] | None = None
        self._backward: Backward | None = None
        self._losses = torch.empty(0)
        self._tensors = [*plan.model.parameters(), *plan.model.buffers()]
        self._addresses: tuple[int, ...] = ()
        self._params = distinct([p for group in plan.stage_params for p in group])
        self._grads: list[Tensor | None] = []
        self._seen: dict[tuple[object, ...], int] = {}  # warm-up steps per batch shape

    def __call__(self, images: Tensor, labels: Tensor) -> list[Tensor]:
        if self._graph is not None and not self._fits(images, labels):
            return self._eager(images, labels)
        if self._graph is None:
            shapes = _shapes(images, labels)
            seen = self._seen.get(shapes, 0)
            if seen < self.warmup:  # a shape seen often enough is the one to capture
                self._seen[shapes] = seen + 1
                return self._eager(images, labels, side_stream=True)
            self._capture(images, labels)
        assert self._graph is not None and self._inputs is not None and self._backward
        self._inputs[0].copy_(images)
        self._inputs[1].copy_(labels)
        self._graph.replay()
        self.replays += 1
        if any(map(operator.is_not, map(_GRAD, self._params), self._grads)):
            # an eager step, or the caller (``zero_grad``), replaced gradients the graph writes
            for p, grad in zip(self._params, self._grads, strict=True):
                p.grad = grad
        finish_step(self.plan, self._backward)
        return list(self._losses.clone().unbind(0))  # one copy, free of the next replay

    def _fits(self, images: Tensor, labels: Tensor) -> bool:
        """Whether a replay computes this batch's step; a moved parameter or buffer drops the
        graph so that the next step captures again."""
        assert self._inputs is not None
        if tuple(map(Tensor.data_ptr, self._tensors)) != self._addresses:
            self._graph = None
            return True
        return _shapes(images, labels) == _shapes(*self._inputs)

    def _eager(self, images: Tensor, labels: Tensor, *, side_stream: bool = False) -> list[Tensor]:
        """One ordinary step; during the warm-up on a side stream, as a capture needs."""
        self.eager_steps += 1
        if not side_stream:
            return train_step(self.plan, self.runtime, images, labels)
        current = torch.cuda.current_stream(images.device)
        side = torch.cuda.Stream(images.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            losses = train_step(self.plan, self.runtime, images, labels)
        current.wait_stream(side)
        return losses

    def _capture(self, images: Tensor, labels: Tensor) -> None:
        """Record ``backward_step`` on copies of this batch (nothing runs during a capture:
        the caller replays it next). Errors are checked in this thread only: the data
        loader's pinning thread may allocate host memory meanwhile."""
        self._inputs = (images.clone(), labels.clone())
        self._graph = None
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._backward = backward_step(
                    self.plan, self.runtime, *self._inputs, cast_cache=False
                )
                self._losses = torch.stack(self._backward.losses)  # (stages,)
        except RuntimeError as error:
            fail(
                "T020",
                "this training step cannot be recorded as a CUDA graph: "
                f"{str(error).splitlines()[0]}",
                help="train without --cuda-graphs, and report the spec and options",
            )
        self._graph = graph
        self.captures += 1
        self._addresses = tuple(map(Tensor.data_ptr, self._tensors))
        self._grads = [p.grad for p in self._params]


def _require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, and the run is on {device}")


def _shapes(images: Tensor, labels: Tensor) -> tuple[object, ...]:
    """What a capture fixes about a batch: shapes, dtypes and device."""
    return (images.shape, images.dtype, labels.shape, labels.dtype, images.device)
