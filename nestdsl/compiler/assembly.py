"""How unit parameters become the tensors joint execution multiplies.

Parameters belong to units (a stripe of a layer), but joint execution runs whole layers: each
block of a width-nested convolution's plan (``plans.py``) multiplies one weight in which its
stripes' weights are placed over the input prefix, with zeros at the pruned back-edges, and a
BatchNorm normalises with its stripes' affine parameters as one vector. A layer describes
those tensors as ``Piece``s. Built layer by layer (``materialize``) they cost about six small
kernels per layer and forward pass (pads and concatenations), which a launch-bound GPU step
pays one by one ("GPU" in docs/performance.md).

``WeightBank`` removes that cost: the parameters of every layer that needs assembling are views
of one flat tensor that ends in a zero, and one ``index_select`` gathers every piece the
current plans need (a pruned entry reads the zero). Its backward gathers the pieces' gradients
back in one more (each parameter entry appears exactly once among the pieces) and hands every
parameter a view of that one flat gradient. The parameters stay ordinary leaves, so optimizers,
``autograd.grad``, state dicts and checkpoints see no difference. Per-task training, which runs
one backward per stage, can take that flat gradient as it is instead (``capturing``, used by
``fill_grad(..., capture=bank)``): a view per parameter and stage is then never made.

On the CPU (``PER_LAYER_DEVICES``) the bank stays out of the way: parameters keep their own
storage and layers assemble their pieces. Elsewhere, when the aliasing does not hold, layers
fall back to ``materialize`` too, with the same values: ``Module.to`` and friends give
parameters new storage until ``NestedNet`` calls ``retie``;
``torch.func.functional_call`` substitutes other tensors; ``torch.compile``, ``torch.export``
and tracing work on stand-in tensors (and fuse the small kernels themselves).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.memory_order import channels_last, flatten, unflatten


class Placement(nn.Module):
    """Where one unit's weight goes inside a weight over a prefix of the layer's input.

    A unit reading a prefix of the input is padded with zeros; any other kept set is copied
    into zeros by an index that lives on the weight's device as a buffer, so placing the
    weight never copies from the host (no host-device synchronisation).
    """

    index: Tensor | None

    def __init__(self, kept: list[int]):
        super().__init__()
        self.kept = tuple(kept)
        prefix = self.kept == tuple(range(len(kept)))
        index = None if prefix else torch.tensor(kept, dtype=torch.long)
        self.register_buffer("index", index, persistent=False)

    def place(self, weight: Tensor, width: int) -> Tensor:
        """``weight`` ([out, kept, k, k]) spread over ``width`` input channels, zeros
        elsewhere: [out, width, k, k]."""
        if self.index is None:
            pad = width - len(self.kept)
            return F.pad(weight, (0, 0, 0, 0, 0, pad)) if pad else weight
        shape = (weight.shape[0], width, *weight.shape[2:])
        return weight.new_zeros(shape).index_copy(1, self.index, weight)


@dataclass(frozen=True)
class Part:
    """One unit parameter inside a piece: entry ``stripe`` of the layer's parameter list
    ``store`` ("weight", "bias", "bn_weight", "bn_bias")."""

    store: str
    stripe: int


@dataclass(frozen=True)
class Piece:
    """A tensor joint execution uses: its parts stacked along dimension 0.

    ``width`` set: the parts are convolution weights, each placed over the first ``width``
    input channels by its stripe's ``Placement``; None: they are stacked as they are
    (vectors, grouped-convolution weights).
    """

    parts: tuple[Part, ...]
    width: int | None = None
    autocast: bool = False
    """Whether it feeds an op that autocast runs in lower precision (convolution weights and
    biases): under autocast the bank casts all such pieces at once, so the ops need not."""


class Assembles(Protocol):
    """A layer whose joint execution uses pieces (``ops.ConvOp``, ``ops.BatchNormOp``)."""

    def pieces(self, device: str) -> tuple[Piece, ...]:
        """The pieces joint execution on ``device`` (a device type) uses, in a fixed order;
        the same tuple object for as long as the plan behind it holds."""
        ...

    def unit(self, store: str, stripe: int) -> Tensor:
        """Entry ``stripe`` of the parameter list ``store`` (a parameter, or what replaced
        it): the tensor a ``Part`` names."""
        ...

    def placement(self, stripe: int) -> Placement:
        """Where ``stripe``'s weight goes in a piece with a width."""
        ...

    def assembled_parameters(self) -> list[Tensor]:
        """Every tensor its pieces are made of, in a fixed order."""
        ...


def materialize(layer: Assembles, piece: Piece) -> Tensor:
    """``piece`` built from its parts with ordinary differentiable ops (pad or index copy per
    part, one concatenation), and no op at all for a part that is the piece."""
    tensors = [layer.unit(part.store, part.stripe) for part in piece.parts]
    width = piece.width
    if width is not None:
        tensors = [
            layer.placement(part.stripe).place(tensor, width)
            for part, tensor in zip(piece.parts, tensors, strict=True)
        ]
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)


@dataclass(frozen=True, eq=False)
class _Gather:
    """The index work of one set of plans, on the flat tensor's device."""

    gather: Tensor
    """Flat position of every entry of every piece (the zero's position for pruned entries),
    each piece in its memory order, the pieces in ``order``."""
    scatter: Tensor
    """Per parameter entry (flat order, zero excluded): its position in ``gather``."""
    order: tuple[int, ...]
    """The pieces (by index) in gather order: those autocast casts first."""
    low: int
    """How many pieces autocast casts (the first ``low`` in gather order)."""
    shapes: tuple[torch.Size, ...]
    channels_last: tuple[bool, ...]
    sizes: tuple[int, ...]
    """Entries per piece (these three in gather order)."""
    param_shapes: tuple[torch.Size, ...]
    param_channels_last: tuple[bool, ...]
    param_sizes: tuple[int, ...]
    """Shape, channels-last layout and size of every parameter, in flat order."""
    spans: tuple[tuple[str, int, int], ...]
    """(layer id, first piece, stop) per layer."""

    def split(self, whole: Tensor, low: torch.dtype | None) -> tuple[Tensor, ...]:
        """The gathered entries as the pieces in piece order (views), those that autocast
        casts in ``low`` (None: not under autocast) by one cast of them all."""
        chunks: list[Tensor] = list(whole.split(self.sizes))
        if low is not None and self.low:
            cast = sum(self.sizes[: self.low])
            chunks[: self.low] = whole[:cast].to(low).split(self.sizes[: self.low])
        pieces: list[Tensor] = [whole] * len(chunks)
        for index, piece in zip(
            self.order, map(unflatten, chunks, self.shapes, self.channels_last), strict=True
        ):
            pieces[index] = piece
        return tuple(pieces)

    def split_params(self, flat: Tensor) -> tuple[Tensor, ...]:
        """A vector in flat order (the zero excluded) as one view per parameter (``map``, not
        a loop: a network has hundreds of parameters, and this runs in every backward)."""
        chunks = flat.split(self.param_sizes)
        return tuple(map(unflatten, chunks, self.param_shapes, self.param_channels_last))

    def join(
        self,
        grads: Sequence[Tensor | None],
        like: Tensor,
        dtype: torch.dtype,
        low: torch.dtype | None,
    ) -> Tensor:
        """The pieces' gradients (piece order) as one vector in ``gather``'s order, zeros
        where None: one ``_chunk_cat`` per dtype (it flattens each piece, a permuted
        channels-last one in memory order). The gradients are in ``dtype`` (the flat
        tensor's), except under autocast (``low``) those of the first ``self.low`` pieces,
        in that dtype; the last concatenation promotes them. ``like``: their device."""
        ordered = [grads[index] for index in self.order]
        split = self.low if low is not None else 0
        groups = [(split, len(ordered), dtype)]
        if low is not None and split:
            groups.insert(0, (0, split, low))
        parts = [
            self._chunk(ordered, first, stop, like.new_zeros((), dtype=kind))
            for first, stop, kind in groups
            if stop > first
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _chunk(self, ordered: list[Tensor | None], first: int, stop: int, zero: Tensor) -> Tensor:
        """Pieces [first, stop) (gather order), all of ``zero``'s dtype, as one vector."""
        pieces = [
            zero.expand(size) if grad is None else grad.permute(0, 2, 3, 1) if last else grad
            for grad, size, last in zip(
                ordered[first:stop],
                self.sizes[first:stop],
                self.channels_last[first:stop],
                strict=True,
            )
        ]
        return torch._chunk_cat(pieces, 0, 1).view(-1)


@dataclass(eq=False)
class _Sink:
    """Where the bank's backward hands over the parameters' gradient as one flat vector
    instead of one view per parameter (``WeightBank.capturing``); None: it does not."""

    flat: list[Tensor] | None = None


class _Assemble(torch.autograd.Function):
    """Gather every piece from the flat tensor; route the pieces' gradients to the parameters
    (the inputs after the first four), which alias the flat tensor and are not read here."""

    @staticmethod
    def forward(
        ctx: Any, flat: Tensor, plan: _Gather, low: torch.dtype | None, sink: _Sink, *params: Tensor
    ) -> tuple[Tensor, ...]:
        ctx.plan, ctx.dtype, ctx.low, ctx.sink = plan, flat.dtype, low, sink
        ctx.set_materialize_grads(False)
        return plan.split(flat.index_select(0, plan.gather), low)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        plan: _Gather = ctx.plan
        like = next(grad for grad in grads if grad is not None)
        whole = plan.join(grads, like, ctx.dtype, ctx.low).to(ctx.dtype)
        whole = whole.index_select(0, plan.scatter)  # flat order
        needed = ctx.needs_input_grad[4:]
        if ctx.sink.flat is not None:
            ctx.sink.flat.append(whole)
            return (None,) * (4 + len(needed))
        per_param = plan.split_params(whole)
        grads_out = (g if need else None for g, need in zip(per_param, needed, strict=True))
        return (None, None, None, None, *grads_out)


PER_LAYER_DEVICES = frozenset({"cpu"})
"""Device types on which layers assemble their own pieces. On a CPU the pads and
concatenations are copies at memory speed while an indexed gather costs about five times a
copy per entry: with the bank a CIFAR-size training step was 10 % slower there
(docs/performance.md). Where each kernel launch costs more than the work (GPUs), one gather
replaces a handful of launches per layer."""


class WeightBank:
    """The parameters of the layers that need assembling, as views of one flat tensor, and
    the one-kernel assembly of every piece they make (see the module docstring).

    ``per_layer_devices``: the device types on which ``assemble`` leaves the work to the
    layers (default ``PER_LAYER_DEVICES``; empty to gather everywhere).
    """

    def __init__(self, layers: Mapping[str, Assembles]):
        self.layers = dict(layers)
        self.per_layer_devices = PER_LAYER_DEVICES
        self.flat: Tensor | None = None
        self._addresses: tuple[int, ...] = ()
        self._plans: dict[tuple[Any, ...], _Gather] = {}
        self._slots = _slots(list(self.layers.values()))
        self._sink = _Sink()
        self.retie()

    def parameters(self) -> list[Tensor]:
        """The layers' ``assembled_parameters``, in that order, read from the tables they are
        registered in: one dictionary lookup each, as every forward pass asks for them."""
        return [table[name] for table, name in self._slots]

    def flat_parameters(self) -> list[Tensor]:
        """The parameters in the order of the gradient ``capturing`` hands over (the flat
        tensor's order, each parameter's entries in its memory order)."""
        return self.parameters()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[Tensor]]:
        """Within the block, a backward pass through the gathered pieces appends the
        parameters' gradient to the yielded list as one flat vector (in ``flat_parameters``
        order) and gives the parameters none: the views a gradient per parameter costs are
        not made. ``fill_grad(..., capture=bank)`` uses it; the list stays empty when no
        backward passed through the bank (on a CPU, in anytime execution, when compiled)."""
        sink: list[Tensor] = []
        self._sink.flat = sink
        try:
            yield sink
        finally:
            self._sink.flat = None

    def tied(self, params: Sequence[Tensor]) -> bool:
        """Whether every one of ``params`` is still the view of the flat tensor it was made:
        each begins where it began when tied (a new storage, dtype or substitute does not)."""
        return self.flat is not None and tuple(map(Tensor.data_ptr, params)) == self._addresses

    def retie(self) -> None:
        """Make the parameters views of one new flat tensor holding their values (each in its
        own memory layout), unless they already are. Nothing on a device type of
        ``per_layer_devices`` (the parameters keep storages of their own there, so exports
        and copies see plain tensors), nor when they do not share one device and dtype."""
        params = self.parameters()
        if not params or self.tied(params):
            return
        self.flat, self._addresses = None, ()
        self._plans.clear()
        kinds = {(p.device, p.dtype) for p in params}
        if len(kinds) > 1 or params[0].device.type in self.per_layer_devices:
            return
        lasts = [channels_last(p) for p in params]
        with torch.no_grad():
            segments = [flatten(p.detach(), last) for p, last in zip(params, lasts, strict=True)]
            flat = torch.cat([*segments, params[0].new_zeros(1)])
        offset = 0
        for p, segment, last in zip(params, segments, lasts, strict=True):
            chunk = flat[offset : offset + segment.numel()]
            p.data = unflatten(chunk, p.shape, last)
            offset += segment.numel()
        self.flat, self._addresses = flat, tuple(p.data_ptr() for p in params)

    @contextlib.contextmanager
    def gathering(self, gather: bool, device: str) -> Iterator[None]:
        """Within the block, gather on ``device`` (a device type) or leave the work to the
        layers there, whatever the default (to compare the two, or test the bank on a CPU);
        tying the parameters where gathering needs it."""
        default = self.per_layer_devices
        self.per_layer_devices = default - {device} if gather else default | {device}
        self.retie()
        try:
            yield
        finally:
            self.per_layer_devices = default

    def assemble(self, device: str) -> dict[str, tuple[Tensor, ...]]:
        """Every assembling layer's pieces for joint execution on ``device`` (a device type),
        gathered at once; empty when the layers must build them themselves."""
        if not self.layers or device in self.per_layer_devices or traced():
            return {}
        params = self.parameters()
        flat = self.flat
        if flat is None or not self.tied(params):
            return {}
        pieces = tuple(layer.pieces(device) for layer in self.layers.values())
        key = (device, flat.device, *map(id, pieces))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(pieces, params, flat)
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        if torch.is_grad_enabled():
            tensors = _Assemble.apply(flat, plan, low, self._sink, *params)
        else:  # no graph to record: the gather alone (`apply` costs about 1 µs per input)
            tensors = plan.split(flat.index_select(0, plan.gather), low)
        return {layer: tensors[first:stop] for layer, first, stop in plan.spans}

    def _plan(
        self, pieces: tuple[tuple[Piece, ...], ...], params: list[Tensor], flat: Tensor
    ) -> _Gather:
        """Index ``pieces`` by flat position: the gather, and its inverse for the backward.

        The key holds the ids of the pieces' tuples; the plan holds the tuples themselves, so
        an id cannot be reused by a newer plan while this one is cached.
        """
        zero = flat.numel() - 1
        positions = torch.arange(flat.numel())
        built: list[tuple[Tensor, bool, bool]] = []  # index, channels-last, autocast: per piece
        spans = []
        for (layer_id, layer), own in zip(self.layers.items(), pieces, strict=True):
            spans.append((layer_id, len(built), len(built) + len(own)))
            built += [
                (*_index(layer, piece, positions, flat, zero), piece.autocast) for piece in own
            ]
        order = sorted(range(len(built)), key=lambda i: not built[i][2])  # autocast's first
        indices = [flatten(built[i][0], built[i][1]) for i in order]
        gather = torch.cat(indices)
        kept = (gather != zero).nonzero().squeeze(1)
        if sorted(gather[kept].tolist()) != list(range(zero)):
            raise RuntimeError("assembled pieces must hold every parameter entry exactly once")
        scatter = torch.empty(zero, dtype=torch.long)
        scatter[gather[kept]] = kept
        return _Gather(
            gather=gather.to(flat.device),
            scatter=scatter.to(flat.device),
            order=tuple(order),
            low=sum(autocast for _, _, autocast in built),
            shapes=tuple(built[i][0].shape for i in order),
            channels_last=tuple(built[i][1] for i in order),
            sizes=tuple(index.numel() for index in indices),
            param_shapes=tuple(p.shape for p in params),
            param_channels_last=tuple(map(channels_last, params)),
            param_sizes=tuple(p.numel() for p in params),
            spans=tuple(spans),
        )


def _slots(layers: Sequence[Assembles]) -> list[tuple[dict[str, Any], str]]:
    """Where each of the layers' ``assembled_parameters`` is registered: the parameter table of
    the module that holds it, and its name there. Reading a parameter back from its table sees
    what ``load_state_dict(assign=True)`` or ``torch.func.functional_call`` put in its place."""
    slots = []
    for layer in layers:
        tables = {
            id(tensor): (module._parameters, name)
            for module in cast(nn.Module, layer).modules()
            for name, tensor in module._parameters.items()
        }
        slots += [tables[id(p)] for p in layer.assembled_parameters()]
    return slots


def _index(
    layer: Assembles, piece: Piece, positions: Tensor, flat: Tensor, zero: int
) -> tuple[Tensor, bool]:
    """The flat position of every entry of ``piece`` (``zero`` where it is pruned), and
    whether the piece is laid out channels-last (as its parts are)."""
    tensors = [layer.unit(part.store, part.stripe) for part in piece.parts]
    first = tensors[0]
    rows = sum(t.shape[0] for t in tensors)
    trailing = first.shape[1:] if piece.width is None else (piece.width, *first.shape[2:])
    index = torch.full((rows, *trailing), zero, dtype=torch.long)
    start = 0
    for part, tensor in zip(piece.parts, tensors, strict=True):
        offset = tensor.storage_offset() - flat.storage_offset()
        where = positions.as_strided(tensor.shape, tensor.stride(), offset)
        block = index[start : start + tensor.shape[0]]
        if piece.width is None:
            block.copy_(where)
        else:
            block[:, list(layer.placement(part.stripe).kept)] = where
        start += tensor.shape[0]
    return index, channels_last(first)


def traced() -> bool:
    """Whether the forward pass runs under torch.compile, torch.export or tracing, whose
    stand-in tensors have no storage to alias."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()
