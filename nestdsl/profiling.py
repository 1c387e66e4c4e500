"""GPU-cost proxies measurable on a CPU: aten ops dispatched and host-device synchronisations.

On a GPU every dispatched op is a kernel launch or at least a trip through the dispatcher, and
every host read of a device value stalls the launch queue. Both can be counted on any machine
with a `TorchDispatchMode`, which is how `bench/step_costs.py` and the tests hold the training
step to its op and sync budget.

What counts as a synchronisation: a copy to the CPU (`aten._to_copy` to device ``cpu``) or a
host read (`aten._local_scalar_dense`: ``float(t)``, ``t.item()``, ``bool(t)``) of *device
data*: the tensors given to `mark` (parameters, inputs) and everything computed from them,
tracked by storage so that views and in-place writes carry it along. A host copy and what is
computed only from it is host data, free to read. On a CPU-only run the copy is a cheap op,
but the code path, and so the count, is the one a GPU takes.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_READS = {torch.ops.aten._local_scalar_dense.default}
_COPIES = {torch.ops.aten._to_copy.default}
_FRESH = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}
"""Ops that wrap a tensor built outside the dispatcher (``torch.tensor(...)``): new data whose
memory may reuse freed device memory, so its address says nothing."""


def _tensors(tree: Any) -> Iterator[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return (leaf for leaf in leaves if isinstance(leaf, torch.Tensor))


def _storage(t: torch.Tensor) -> int:
    """Identity of the memory a tensor lives in (views share it); 0 for empty tensors."""
    return int(t.untyped_storage().data_ptr())


def _written(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The arguments an op mutates (in-place and ``out=`` ops, foreach ones included)."""
    out: list[torch.Tensor] = []
    for i, argument in enumerate(func._schema.arguments):
        info = argument.alias_info
        if info is None or not info.is_write:
            continue
        value = args[i] if i < len(args) else kwargs.get(argument.name)
        out.extend(_tensors(value))
    return out


class DispatchCounter(TorchDispatchMode):
    """Counts every aten op dispatched inside the ``with`` block, and synchronisations.

    ``ops`` is the total, ``by_op`` the count per overload name, ``device_ops`` the ops that
    touch device data (the rest is host math on small copies or bookkeeping on new tensors),
    ``syncs`` the host-device synchronisations as defined in the module docstring (`mark` the
    device data first).
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.syncs = 0
        self.device_ops = 0
        self._device: dict[int, list[weakref.ref[torch.Tensor]]] = {}

    @property
    def ops(self) -> int:
        return sum(self.by_op.values())

    def mark(self, *tensors: torch.Tensor) -> None:
        """Declare tensors as device data (parameters, buffers, the batch)."""
        for t in tensors:
            refs = self._device.setdefault(_storage(t), [])
            refs.append(weakref.ref(t))
            if t._base is not None:  # a view written in place: its base outlives it
                refs.append(weakref.ref(t._base))

    def _on_device(self, t: torch.Tensor) -> bool:
        """Whether `t` shares memory with live device data. Memory of freed device tensors
        is reused by new ones (Python scalars wrapped as tensors, say), so an address only
        counts while a tensor registered under it is alive."""
        key = _storage(t)
        refs = self._device.get(key)
        if refs is None:
            return False
        if any(ref() is not None for ref in refs):
            return True
        del self._device[key]
        return False

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        self.by_op[str(func)] += 1
        on_device = func not in _FRESH and any(self._on_device(t) for t in _tensors((args, kwargs)))
        to_host = func in _COPIES and kwargs.get("device") == torch.device("cpu")
        self.device_ops += on_device
        if on_device and (to_host or func in _READS):
            self.syncs += 1
        out = func(*args, **kwargs)
        if on_device and not to_host:
            self.mark(*_tensors(out), *_written(func, args, kwargs))
            self._device.pop(0, None)
        return out
