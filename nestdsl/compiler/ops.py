"""One module per IR op. Each runs a whole layer (joint execution) or only some of its units
from cached unit tensors (anytime execution).

Parameters are owned by units: a conv unit (layer, stripe j) owns its incoming weights from
the input channels its kept edges cover (``kept``), and its BatchNorm affine parameters.
Joint execution runs a convolution by its plan (``plans.py``): one dense weight assembled from
the units' weights with the pruned entries zero, or blocks of stripes that each convolve only
the input prefix they read (no zeros). A layer describes the tensors a plan multiplies as
pieces (``assembly.py``), which the network's weight bank gathers for all layers at once;
anytime execution convolves the kept input channels with a unit's own weight directly.
BatchNorm statistics are per channel, so a unit's activation never depends on units of later
stages (no per-width BN switching is needed).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.compiler.assembly import Part, Piece, Placement, materialize, traced
from nestdsl.compiler.plans import PLANNERS, Block, ConvShape, Execution
from nestdsl.ir.model import Layer

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def combine(agg: str, inputs: Sequence[Tensor]) -> Tensor:
    """Combine tensors as ``agg`` says: concatenation, or an element-wise sum or product
    (a product broadcasts an SE gate's [B, C, 1, 1] over the features' [B, C, H, W])."""
    if len(inputs) == 1:
        return inputs[0]
    if agg == "concat":
        return torch.cat(list(inputs), dim=1)
    total = inputs[0]
    for tensor in inputs[1:]:
        total = total * tensor if agg == "product" else total + tensor
    return total


def aggregate(layer: Layer, inputs: Sequence[Tensor]) -> Tensor:
    """Combine a layer's inputs as the IR says."""
    return combine(layer.agg, inputs)


def _cat_weights(weights: list[Tensor]) -> Tensor:
    """Per-unit tensors (weights, biases, BatchNorm parameters) stacked along their first
    dimension into the layer's, with no op at all for a single unit."""
    return weights[0] if len(weights) == 1 else torch.cat(weights, dim=0)


class LayerOp(nn.Module, ABC):
    """Base class: a layer of the IR with per-unit parameters."""

    order: Tensor | None

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__()
        self.layer = layer
        self.kept = kept
        self.in_channels = in_channels
        # A channel-wise layer over a concatenation of several split layers reads stripe j of
        # each: its input is gathered stripe by stripe (the kept channels of stripe 1, then of
        # stripe 2 ...), so that its own stripe j is a contiguous block, as in anytime mode.
        stripe_major = layer.channelwise and layer.agg == "concat" and len(layer.inputs) > 1
        order = [c for kept_j in kept for c in kept_j]
        needed = stripe_major and len(layer.stripes) > 1 and order != sorted(order)
        self.register_buffer(
            "order", torch.tensor(order, dtype=torch.long) if needed else None, persistent=False
        )

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        return []

    def set_execution(self, execution: Execution) -> None:
        """Choose how joint execution runs the layer; only convolutions have a choice."""

    def assembles(self) -> bool:
        """Whether joint execution needs tensors assembled from several unit parameters (the
        network's weight bank then gathers them; see ``assembly.py``)."""
        return False

    def pieces(self, device: str) -> tuple[Piece, ...]:
        """The assembled tensors joint execution on ``device`` (a device type) uses."""
        return ()

    def unit(self, store: str, stripe: int) -> Tensor:
        """Entry ``stripe`` of the parameter list ``store`` (or the tensor that replaced it,
        as ``torch.func.functional_call`` does), read from the list's own table: indexing a
        ``ParameterList`` costs about 6 µs a call, which a tiny network's passes make
        dozens of times."""
        tensor = cast(nn.Module, self._modules[store])._parameters[str(stripe)]
        assert tensor is not None
        return tensor

    def placement(self, stripe: int) -> Placement:
        raise TypeError(f"layer {self.layer.id} places no weights")

    def assembled_parameters(self) -> list[Tensor]:
        return [p for j in range(len(self.layer.stripes)) for p in self.unit_parameters(j)]

    def materialize_all(self, device: str) -> tuple[Tensor, ...]:
        """The pieces built by this layer alone (when the weight bank cannot gather them)."""
        return tuple(materialize(self, piece) for piece in self.pieces(device))

    def gather(self, inputs: Sequence[Tensor]) -> Tensor:
        """The layer's aggregated input in the channel order its stripes read."""
        x = aggregate(self.layer, inputs)
        return x if self.order is None else x.index_select(1, self.order)

    @abstractmethod
    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        """Joint execution: the whole layer from its whole inputs; ``assembled``: its pieces
        as the weight bank gathered them (empty: the layer builds them itself)."""

    @abstractmethod
    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        """Compute ``stripes`` (which share one kept-input set) from their gathered input."""


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "gelu": F.gelu,
    "hardswish": F.hardswish,
    "sigmoid": torch.sigmoid,
    "hardsigmoid": F.hardsigmoid,
}
"""Activation name (``Layer.act``) -> function; all act per element."""


class _Normalised(LayerOp):
    """Shared BatchNorm code of convolutions with BN and standalone BN layers."""

    running_mean: Tensor
    running_var: Tensor
    bn_weight: nn.ParameterList
    bn_bias: nn.ParameterList

    def _create_norm(self) -> None:
        stripes = self.layer.stripes
        self.bn_weight = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in stripes)
        self.bn_bias = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in stripes)
        self.register_buffer("running_mean", torch.zeros(self.layer.channels))
        self.register_buffer("running_var", torch.ones(self.layer.channels))
        self._run_cache: dict[tuple[int, ...], tuple[_Run, ...]] = {}
        self._stat_views: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        # Read from the lists' tables (``unit``): the weight bank asks for every assembling
        # layer's parameters at each forward pass. A standalone BatchNorm has only the last two.
        stores = ("weight", "bias", "bn_weight", "bn_bias")
        return [
            cast(nn.Parameter, self.unit(store, stripe))
            for store in stores
            if self._modules.get(store) is not None
        ]

    def _norm_pieces(self) -> tuple[Piece, Piece]:
        """The BatchNorm weight and bias of all stripes, as two vectors."""
        stripes = range(len(self.layer.stripes))
        return (
            Piece(tuple(Part("bn_weight", j) for j in stripes)),
            Piece(tuple(Part("bn_bias", j) for j in stripes)),
        )

    def _bn_all(self, y: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return F.batch_norm(
            y,
            self.running_mean,
            self.running_var,
            weight,
            bias,
            self.training,
            BN_MOMENTUM,
            BN_EPS,
        )

    def _bn_units(self, y: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        """BatchNorm + activation of the consecutive channel chunks of ``stripes`` in ``y``.

        Statistics are per channel, so a run of adjacent stripes is normalised by one call
        (one kernel instead of one per stripe: anytime execution is dominated by such small
        calls) and split afterwards.
        """
        act = ACTIVATIONS[self.layer.act]
        outputs: list[Tensor] = []
        for run in self._runs(tuple(stripes)):
            whole = run.stop - run.start == y.shape[1]
            out = act(
                F.batch_norm(
                    y if whole else y[:, run.start : run.stop],
                    *self._statistics(run),
                    _cat_weights([self.unit("bn_weight", j) for j in run.stripes]),
                    _cat_weights([self.unit("bn_bias", j) for j in run.stripes]),
                    self.training,
                    BN_MOMENTUM,
                    BN_EPS,
                )
            )
            outputs += torch.split(out, run.widths, 1) if len(run.stripes) > 1 else [out]
        return outputs

    def _runs(self, stripes: tuple[int, ...]) -> tuple[_Run, ...]:
        """``stripes`` cut into runs of adjacent stripes, worked out once per stripe set."""
        runs = self._run_cache.get(stripes)
        if runs is None:
            runs = self._run_cache[stripes] = _cut_runs(self.layer, stripes)
        return runs

    def _statistics(self, run: _Run) -> tuple[Tensor, Tensor]:
        """The running mean and variance of ``run``'s channels: views sliced once per buffer
        (each slice is a dispatched op, two per anytime step) and sliced afresh when the
        buffers were replaced (``Module.to``, ``load_state_dict(assign=True)``)."""
        mean, var = self._buffers["running_mean"], self._buffers["running_var"]
        assert mean is not None and var is not None
        if run.rows is None:
            return mean, var
        first, stop = run.rows
        if traced():  # stand-in tensors: nothing to keep
            return mean[first:stop], var[first:stop]
        views = self._stat_views.get(run.rows)
        if views is None or views[0] is not mean or views[1] is not var:
            views = self._stat_views[run.rows] = (mean, var, mean[first:stop], var[first:stop])
        return views[2], views[3]


@dataclass(frozen=True)
class _Run:
    """Adjacent stripes normalised together: their channels ``start:stop`` in the input of
    ``_bn_units``, and the rows ``first, stop`` of the layer's statistics (None: all)."""

    stripes: tuple[int, ...]
    widths: list[int]
    start: int
    stop: int
    rows: tuple[int, int] | None


def _cut_runs(layer: Layer, stripes: tuple[int, ...]) -> tuple[_Run, ...]:
    """``stripes`` cut where one is not its predecessor + 1: [0, 1, 3] -> runs [0, 1], [3]."""
    groups: list[list[int]] = []
    for j in stripes:
        if groups and groups[-1][-1] + 1 == j:
            groups[-1].append(j)
        else:
            groups.append([j])
    offsets, runs, start = layer.offsets(), [], 0
    for group in groups:
        widths = [layer.stripes[j] for j in group]
        width = sum(widths)
        first = offsets[group[0]]
        rows = None if width == layer.channels else (first, first + width)
        runs.append(_Run(tuple(group), widths, start, start + width, rows))
        start += width
    return tuple(runs)


class ConvOp(_Normalised):
    """Convolution (+ bias) (+ BatchNorm) + activation; grouped convolutions keep stripes."""

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        k, groups = layer.kernel, layer.groups
        per_group = in_channels // groups
        self.weight = nn.ParameterList(
            nn.Parameter(torch.empty(c, per_group if groups > 1 else len(kept_j), k, k))
            for c, kept_j in zip(layer.stripes, kept, strict=True)
        )
        self.bias = (
            nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in layer.stripes)
            if layer.bias
            else None
        )
        if layer.bn:
            self._create_norm()
        self.placements = nn.ModuleList(Placement(kept_j) for kept_j in kept)
        fan_out = layer.channels // groups * k * k
        for weight in self.weight:
            nn.init.normal_(weight, std=(2.0 / fan_out) ** 0.5)  # He init, fan-out mode
        prefixes = all(kept_j == list(range(len(kept_j))) for kept_j in kept)
        # Set when the layer can run block-wise: several stripes, each reading an input prefix.
        self.shape = (
            ConvShape(layer.stripes, tuple(map(len, kept)), in_channels, k)
            if prefixes and groups == 1 and len(kept) > 1
            else None
        )
        self.execution: Execution = "auto"
        self._plans: dict[tuple[Execution, str], tuple[tuple[Block, ...], tuple[Piece, ...]]]
        self._plans = {}
        """(execution, device type) -> blocks and their pieces: switching modes back and forth
        re-plans nothing."""

    def set_execution(self, execution: Execution) -> None:
        """Choose how joint execution runs this layer (see ``plans.Execution``)."""
        self.execution = execution

    def assembles(self) -> bool:
        if len(self.weight) > 1:
            return True
        placement = self.placement(0)
        return self.layer.groups == 1 and (
            placement.index is not None or len(placement.kept) < self.in_channels
        )

    def placement(self, stripe: int) -> Placement:
        return cast(Placement, self.placements._modules[str(stripe)])

    def plan(self, device: str) -> tuple[Block, ...]:
        """The blocks joint execution runs on ``device`` (a device type), planned once."""
        return self._planned(device)[0]

    def pieces(self, device: str) -> tuple[Piece, ...]:
        """One weight per block, then one bias per block (with a bias), then the BatchNorm
        weight and bias (with BatchNorm)."""
        return self._planned(device)[1]

    def _planned(self, device: str) -> tuple[tuple[Block, ...], tuple[Piece, ...]]:
        key = (self.execution, device)
        if key not in self._plans:
            blocks = (
                (Block(0, len(self.weight), self.in_channels),)
                if self.shape is None
                else PLANNERS[self.execution](self.shape, device)
            )
            self._plans[key] = (blocks, self._pieces_of(blocks))
        return self._plans[key]

    def _pieces_of(self, blocks: tuple[Block, ...]) -> tuple[Piece, ...]:
        grouped = self.layer.groups > 1  # stripes hold whole groups: stacked, not placed
        pieces = [
            Piece(
                tuple(Part("weight", j) for j in b.stripes),
                None if grouped else b.width,
                autocast=True,
            )
            for b in blocks
        ]
        if self.bias is not None:
            pieces += [
                Piece(tuple(Part("bias", j) for j in b.stripes), autocast=True) for b in blocks
            ]
        if self.layer.bn:
            pieces += self._norm_pieces()
        return tuple(pieces)

    def use_plan(self, device: str, blocks: tuple[Block, ...]) -> None:
        """Run joint execution on ``device`` (a device type) by ``blocks`` instead of the
        current execution mode's plan, e.g. to time every partition (``bench/conv_plans.py``);
        ``set_execution`` to that mode again keeps it, another mode plans afresh. The blocks
        must be consecutive runs covering every stripe, each reading at least its stripes'
        kept input prefix."""
        shape = self.shape
        if shape is None:
            raise ValueError(f"layer {self.layer.id} has no block-wise plans")
        bounds = [(b.first, b.stop) for b in blocks]
        stops = [0, *(stop for _, stop in bounds)]
        if [first for first, _ in bounds] != stops[:-1] or stops[-1] != len(shape.stripes):
            raise ValueError(f"blocks {bounds} do not cover stripes 0..{len(shape.stripes) - 1}")
        if any(b.width < max(shape.kept[b.first : b.stop]) for b in blocks):
            raise ValueError("a block reads less than the input prefix its stripes need")
        self._plans[(self.execution, device)] = (blocks, self._pieces_of(blocks))

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None, out: int) -> Tensor:
        layer = self.layer
        groups = out // (layer.channels // layer.groups) if layer.groups > 1 else 1
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, groups)

    def _bias(self, stripes: Sequence[int]) -> Tensor | None:
        if self.bias is None:
            return None
        return _cat_weights([self.unit("bias", j) for j in stripes])

    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        layer = self.layer
        x = self.gather(inputs)  # [B, C_in, H, W]
        device = x.device.type
        blocks = self.plan(device)
        tensors = assembled or self.materialize_all(device)
        n = len(blocks)
        biases = tensors[n : 2 * n] if self.bias is not None else [None] * n
        ys = [
            # each block convolves the input prefix it reads: [B, block channels, H', W']
            self._conv(
                x if block.width == self.in_channels else x[:, : block.width],
                weight,
                bias,
                sum(layer.stripes[j] for j in block.stripes),
            )
            for block, weight, bias in zip(blocks, tensors[:n], biases, strict=True)
        ]
        y = ys[0] if n == 1 else torch.cat(ys, dim=1)  # [B, C_out, H', W']
        if layer.bn:
            y = self._bn_all(y, tensors[-2], tensors[-1])
        return ACTIVATIONS[layer.act](y)

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        layer = self.layer
        weight = _cat_weights([self.unit("weight", j) for j in stripes])
        y = self._conv(x, weight, self._bias(stripes), sum(layer.stripes[j] for j in stripes))
        if layer.bn:
            return self._bn_units(y, stripes)
        return list(torch.split(ACTIVATIONS[layer.act](y), [layer.stripes[j] for j in stripes], 1))


class BatchNormOp(_Normalised):
    """A standalone BatchNorm (+ activation), e.g. the BN → ReLU before a pre-activation conv."""

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        self._create_norm()

    def assembles(self) -> bool:
        return len(self.layer.stripes) > 1

    def pieces(self, device: str) -> tuple[Piece, ...]:
        return self._norm_pieces()

    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        x = self.gather(inputs)
        weight, bias = assembled or self.materialize_all(x.device.type)
        return ACTIVATIONS[self.layer.act](self._bn_all(x, weight, bias))

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return self._bn_units(x, stripes)


class LayerNormOp(LayerOp):
    """LayerNorm over the channels of each pixel (+ activation); one stripe only (checked)."""

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        self.weight = nn.Parameter(torch.ones(layer.channels))
        self.bias = nn.Parameter(torch.zeros(layer.channels))

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        return [self.weight, self.bias]

    def _normalize(self, x: Tensor) -> Tensor:
        channels_last = x.permute(0, 2, 3, 1)  # [B, H, W, C]
        y = F.layer_norm(channels_last, (x.shape[1],), self.weight, self.bias, BN_EPS)
        return ACTIVATIONS[self.layer.act](y.permute(0, 3, 1, 2))  # [B, C, H, W]

    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        return self._normalize(self.gather(inputs))

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return [self._normalize(x)]


class _Elementwise(LayerOp):
    """A parameter-free channel-wise op: ``_transform`` then the activation, per stripe."""

    def _transform(self, x: Tensor) -> Tensor:
        return x

    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        return ACTIVATIONS[self.layer.act](self._transform(self.gather(inputs)))

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return [ACTIVATIONS[self.layer.act](self._transform(x))]


class AddOp(_Elementwise):
    """Residual sum of the inputs (+ activation); stripe j adds stripe j of each input."""


class ActOp(_Elementwise):
    """A standalone activation."""


class MulOp(_Elementwise):
    """The SE gate's multiply (its inputs combined by product); stripe j scales stripe j."""


class FlattenOp(_Elementwise):
    """[B, C, H, W] -> [B, C*H*W, 1, 1], channel-major, so stripe j's channels stay one
    contiguous block; a 1×1 map keeps the later `linear` (a 1×1 conv) and heads uniform."""

    def _transform(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :, None, None]  # [B, C*H*W, 1, 1]


class _PoolOp(_Elementwise):
    """Pooling per channel: fixed kernel, or adaptive to ``output_size`` (1 = global)."""

    fixed: Callable[..., Tensor]
    adaptive: Callable[..., Tensor]

    def _transform(self, x: Tensor) -> Tensor:
        layer = self.layer
        if layer.output_size:
            return type(self).adaptive(x, layer.output_size)
        return type(self).fixed(x, layer.kernel, layer.stride, layer.padding)


class MaxPoolOp(_PoolOp):
    fixed = staticmethod(F.max_pool2d)
    adaptive = staticmethod(F.adaptive_max_pool2d)


class AvgPoolOp(_PoolOp):
    fixed = staticmethod(F.avg_pool2d)
    adaptive = staticmethod(F.adaptive_avg_pool2d)


class DropoutOp(_Elementwise):
    """Dropout (training only); per element, so stripes stay independent."""

    def _transform(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.layer.dropout, self.training)


class HeadOp(LayerOp):
    """Average pooling to ``output_size`` (1: global), flatten, hidden linear layers with ReLU,
    and the classifier, over the kept input channels; dropout before each linear layer."""

    index: Tensor

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        (kept_0,) = kept
        widths = [len(kept_0) * layer.output_size**2, *layer.hidden]
        self.hidden = nn.ParameterList(
            nn.Parameter(torch.empty(b, a)) for a, b in itertools.pairwise(widths)
        )
        self.hidden_bias = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in layer.hidden)
        self.weight = nn.Parameter(torch.empty(layer.channels, widths[-1]))
        self.bias = nn.Parameter(torch.zeros(layer.channels))
        for weight in (*self.hidden, self.weight):
            nn.init.normal_(weight, std=0.01)
        self.register_buffer("index", torch.tensor(kept_0, dtype=torch.long), persistent=False)
        self.full = kept_0 == list(range(in_channels))

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        hidden = [p for pair in zip(self.hidden, self.hidden_bias, strict=True) for p in pair]
        return [*hidden, self.weight, self.bias]

    def pool(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, s, s] with s = ``output_size``."""
        return F.adaptive_avg_pool2d(x, self.layer.output_size)

    def forward(self, inputs: Sequence[Tensor], assembled: Sequence[Tensor] = ()) -> Tensor:
        pooled = aggregate(self.layer, [self.pool(t) for t in inputs])  # [B, C_in, s, s]
        if not self.full:
            pooled = pooled.index_select(1, self.index)
        return self._classify(pooled)

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return [self._classify(x)]

    def _classify(self, pooled: Tensor) -> Tensor:
        y = pooled.flatten(1)  # [B, C_kept * s * s]
        drop = self.layer.dropout
        for weight, bias in zip(self.hidden, self.hidden_bias, strict=True):
            y = F.relu(F.linear(F.dropout(y, drop, self.training), weight, bias))
        return F.linear(F.dropout(y, drop, self.training), self.weight, self.bias)  # [B, classes]


OPS: dict[str, type[LayerOp]] = {
    "conv": ConvOp,
    "bn": BatchNormOp,
    "layernorm": LayerNormOp,
    "act": ActOp,
    "add": AddOp,
    "mul": MulOp,
    "flatten": FlattenOp,
    "maxpool": MaxPoolOp,
    "avgpool": AvgPoolOp,
    "dropout": DropoutOp,
    "head": HeadOp,
}
