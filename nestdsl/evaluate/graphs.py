"""Inference replayed from CUDA graphs: anytime stages (one graph each) or one module call.

On a GPU an anytime stage is many small kernels, and launching them costs the host more than
the device spends running them: at batch 1 nearly all of a stage's time is launches. A CUDA
graph records a stage's kernels once and replays them with one launch. ``GraphedAnytime``
captures stage 1, 2, ... n in order, each continuing from the tensors the stages before it
left, so stage k replays only its own kernels, as ``NestedNet.advance`` runs them.

What a capture fixes, and so what it cannot follow:

- the input's shape, dtype and device (one batch size; ``AnytimeState.keep`` does not apply);
- the memory of every parameter and buffer: weights loaded in place afterwards
  (``load_state_dict`` without ``assign``) are seen, but tensors given new memory
  (``.to()``, ``assign=True``) are not, and ``start`` then refuses to replay;
- the stage order: stages replay 1, 2, ... and a new ``start`` may come after any of them
  (it ends the previous input's run: one input at a time).

Outputs are copies, so a later replay never changes logits already handed out.

``GraphedCall`` captures one call of a module (``NestedNet.subnetwork(k)``, or a joint pass
with its list of logits) the same way, so that a standalone D_k is timed on the same terms as
a replayed stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from nestdsl.compiler.network import NestedNet
    from nestdsl.ir import NestIR


@dataclass
class GraphedState:
    """How many stages of one input have been replayed; ``input`` counts the ``start`` calls,
    so that a state whose input was overwritten by a newer ``start`` is refused."""

    input: int
    stage: int = 0


class GraphedAnytime:
    """``net``'s anytime inference for inputs shaped like ``example`` ([B, C, H, W], on a
    CUDA device), captured as one CUDA graph per stage (see the module docstring).

    It answers what the anytime runtime asks of a network (``start``, ``advance``,
    ``anytime``, ``num_stages``, ``stage_labels``, ``ir``), in eval mode only. ``warmup``
    eager passes on a side stream precede the capture, so one-off work (kernel selection,
    cached views) is not recorded.
    """

    def __init__(self, net: NestedNet, example: Tensor, *, warmup: int = 2):
        _require_cuda(example)
        self.net = net
        self.ir: NestIR = net.ir
        self.num_stages = net.num_stages
        self.stage_labels = net.stage_labels
        self._input = example.detach().clone()
        self._tensors = [*net.parameters(), *net.buffers()]
        self._addresses = _where(self._tensors)
        self._starts = 0
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                _warm_up(self._stages, self._input, warmup)
                self._graphs, self._outputs = self._capture()
        finally:
            net.train(was_training)  # the graphs replay eval mode whatever the net does next

    @property
    def training(self) -> bool:
        return False

    def eval(self) -> GraphedAnytime:
        return self

    def train(self, mode: bool = True) -> GraphedAnytime:
        if mode:
            raise ValueError("a CUDA-graph capture replays inference only; train the network")
        return self

    def _stages(self, x: Tensor) -> None:
        for _ in self.net.anytime(x):
            pass

    def _capture(self) -> tuple[list[torch.cuda.CUDAGraph], list[Tensor]]:
        """One graph per stage, in stage order, sharing one memory pool: stage k's graph
        reads the tensors that the graphs before it wrote, which stay alive in ``_state``."""
        pool = torch.cuda.graph_pool_handle()
        self._state = self.net.start(self._input)
        graphs, outputs = [], []
        for _ in range(self.num_stages):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                outputs.append(self.net.advance(self._state))
            graphs.append(graph)
        return graphs, outputs

    def start(self, x: Tensor) -> GraphedState:
        """Take ``x`` (the captured shape, dtype and device) as the input of the next stages."""
        _check_input(self._input, x)
        _check_unmoved(self._tensors, self._addresses)
        self._input.copy_(x)
        self._starts += 1
        return GraphedState(self._starts)

    def advance(self, state: GraphedState) -> Tensor:
        """Replay the next stage and return a copy of its logits ([B, classes])."""
        if state.stage >= self.num_stages:
            raise ValueError(f"all {self.num_stages} stages have already run")
        if state.input != self._starts:
            raise ValueError("a newer start() replaced this state's input: one input at a time")
        self._graphs[state.stage].replay()
        state.stage += 1
        return self._outputs[state.stage - 1].clone()

    def anytime(self, x: Tensor) -> Iterator[Tensor]:
        """Each stage's logits in order, as ``NestedNet.anytime`` yields them."""
        state = self.start(x)
        for _ in range(self.num_stages):
            yield self.advance(state)


class GraphedCall:
    """``module(example)`` ([B, C, H, W] on a CUDA device) captured as one CUDA graph, in eval
    mode without autograd. Calling it with an input of the captured shape, dtype and device
    copies the input in, replays, and returns a copy of the output (a tensor, or a list of
    them). Like ``GraphedAnytime``, it replays the memory the module's tensors had at the
    capture and refuses once they moved.
    """

    def __init__(self, module: nn.Module, example: Tensor, *, warmup: int = 2):
        _require_cuda(example)
        self.module = module  # the graph reads its weights' memory: keep them alive
        self._input = example.detach().clone()
        self._tensors = [*module.parameters(), *module.buffers()]
        self._addresses = _where(self._tensors)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                _warm_up(module, self._input, warmup)
                self._graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self._graph):
                    self._output = module(self._input)
        finally:
            module.train(was_training)

    def __call__(self, x: Tensor) -> Tensor | list[Tensor]:
        _check_input(self._input, x)
        _check_unmoved(self._tensors, self._addresses)
        self._input.copy_(x)
        self._graph.replay()
        if isinstance(self._output, Tensor):
            return self._output.clone()
        return [out.clone() for out in self._output]


def _require_cuda(example: Tensor) -> None:
    if example.device.type != "cuda":
        raise ValueError(
            f"CUDA graphs need the network and input on a CUDA device, got {example.device}"
        )


def _check_input(captured: Tensor, x: Tensor) -> None:
    if x.shape != captured.shape or x.dtype != captured.dtype:
        raise ValueError(
            f"captured for inputs {tuple(captured.shape)} {captured.dtype}, got "
            f"{tuple(x.shape)} {x.dtype}: capture again for this shape"
        )


def _where(tensors: list[Tensor]) -> tuple[int, ...]:
    """Where every parameter and buffer lives (``map``: this runs at every replay's start,
    over some 500 tensors for a CIFAR-size ResNet)."""
    return tuple(map(Tensor.data_ptr, tensors))


def _check_unmoved(tensors: list[Tensor], addresses: tuple[int, ...]) -> None:
    if _where(tensors) != addresses:
        raise RuntimeError(
            "the network's parameters or buffers moved to new memory since the capture "
            "(.to(), load_state_dict(assign=True)): capture again"
        )


def _warm_up(run: Callable[[Tensor], object], x: Tensor, passes: int) -> None:
    """``passes`` eager runs on a side stream, so that one-off work (kernel selection, cached
    views) happens before a capture and is not recorded."""
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(passes):
            run(x)
    torch.cuda.current_stream(x.device).wait_stream(side)
