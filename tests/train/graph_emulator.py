"""CUDA graph semantics on the CPU, at the level of aten ops, for testing ``GraphedSteps``.

A CUDA graph records the kernels that a block of Python launches and replays them on the
same memory: Python is not run again, so whatever the block did in Python (a ``.grad``
assigned, a list appended, a value computed on the host) happened once, at the capture,
and a host read of device data inside the block is an error. ``FakeGraph`` records the aten
ops of the block with a dispatch mode and replays them on the tensors they wrote:

- an op that writes into its arguments (in-place, ``out=``) runs again on them;
- a view writes nothing and aliases memory it already shares: skipped;
- any other op runs again and its result is copied into the tensor it returned at the
  capture, the memory that later ops and the caller hold.

As on a GPU, the block's effects on the network's buffers (BatchNorm statistics) and on
the random number generator are undone after the capture (a real capture runs no kernel),
and reading device data on the host (a host read, a copy to the host, an op whose output
size depends on the data) or building a tensor from host data inside it raises.
``emulated_cuda`` patches ``torch.cuda``'s graph and stream functions with these, for a
network on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_HOST_READS = {torch.ops.aten._local_scalar_dense.default}
_COPIES = {torch.ops.aten._to_copy.default}
_FROM_HOST = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}
"""``torch.tensor(...)``: data built on the host, which a GPU would copy to the device in the
capture (a copy from pageable memory, which a capture refuses)."""
_SIZED_BY_DATA = {
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten._unique2.default,
    torch.ops.aten.unique_dim.default,
    torch.ops.aten.unique_consecutive.default,
    torch.ops.aten.repeat_interleave.Tensor,
}
"""Ops whose output size depends on the data: on a GPU the host must read it (a sync)."""


def _sized_by_data(func: Any, args: tuple[Any, ...]) -> bool:
    """The ops above, and indexing with a boolean mask (``x[x > 0]``)."""
    if func in _SIZED_BY_DATA:
        return True
    masks = [i for i in _tensors(args[1:]) if i.dtype == torch.bool]
    return func is torch.ops.aten.index.Tensor and bool(masks)


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_flatten(tree)[0] if isinstance(leaf, torch.Tensor)]


def _writes(func: Any) -> bool:
    return any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments)


def _is_view(func: Any) -> bool:
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None for r in returns) and not _writes(func)


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple[Any, ...], dict[str, Any], Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        to_host = func in _COPIES and kwargs.get("device") == torch.device("cpu")
        if func in _HOST_READS or func in _FROM_HOST or _sized_by_data(func, args) or to_host:
            raise RuntimeError(f"operation not permitted when stream is capturing ({func})")
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


class FakeGraph:
    """Stands in for ``torch.cuda.CUDAGraph``."""

    def __init__(self) -> None:
        self.recorder = _Recorder()
        self.replays = 0

    @torch.no_grad()  # kernels, as the GPU replays them: nothing for autograd to record
    def replay(self) -> None:
        self.replays += 1
        for func, args, kwargs, out in self.recorder.ops:
            if _is_view(func):
                continue
            result = func(*args, **kwargs)
            if _writes(func):
                continue
            for old, new in zip(_tensors(out), _tensors(result), strict=True):
                old.copy_(new)


class _Stream:
    def wait_stream(self, other: object) -> None:
        pass


def emulated_cuda(monkeypatch: pytest.MonkeyPatch, net: nn.Module) -> list[FakeGraph]:
    """Patch ``torch.cuda``'s graphs and streams for ``net`` (on the CPU); returns the list
    that every graph captured from now on is appended to."""
    graphs: list[FakeGraph] = []

    @contextlib.contextmanager
    def graph(cuda_graph: FakeGraph, **options: object) -> Iterator[None]:
        buffers = [b.clone() for b in net.buffers()]
        rng = torch.get_rng_state()
        graphs.append(cuda_graph)
        with cuda_graph.recorder:
            yield
        with torch.no_grad():
            for saved, buffer in zip(buffers, net.buffers(), strict=True):
                buffer.copy_(saved)
        torch.set_rng_state(rng)

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: _Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args, **kwargs: _Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    return graphs
