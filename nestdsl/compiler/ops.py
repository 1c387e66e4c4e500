"""One module per IR op. Each runs a whole layer densely (joint execution) or only some of
its units from cached unit tensors (anytime execution).

Parameters are owned by units: a conv unit (layer, stripe j) owns its incoming weights from
the input channels its kept edges cover (``kept``), and its BatchNorm affine parameters.
Joint execution assembles them into one dense weight whose pruned entries are zero, so a
layer is one convolution whatever the nesting; anytime execution convolves the kept input
channels with a unit's own weight directly. BatchNorm statistics are per channel, so a unit's
activation never depends on units of later stages (no per-width BN switching is needed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.ir.model import Layer

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def aggregate(layer: Layer, inputs: Sequence[Tensor]) -> Tensor:
    """Combine a layer's inputs as the IR says: channel-wise sum or concatenation."""
    if len(inputs) == 1:
        return inputs[0]
    if layer.agg == "concat":
        return torch.cat(list(inputs), dim=1)
    total = inputs[0]
    for tensor in inputs[1:]:
        total = total + tensor
    return total


class _Assembly:
    """How to place one unit's weight inside the dense weight of its layer."""

    def __init__(self, kept: list[int], in_channels: int):
        self.full = kept == list(range(in_channels))
        self.prefix = kept == list(range(len(kept)))
        self.pad = in_channels - len(kept)
        self.index = torch.tensor(kept, dtype=torch.long)
        self.in_channels = in_channels

    def place(self, weight: Tensor) -> Tensor:
        if self.full:
            return weight
        if self.prefix:
            return (
                F.pad(weight, (0, 0, 0, 0, 0, self.pad))
                if weight.dim() == 4
                else F.pad(weight, (0, self.pad))
            )
        shape = (weight.shape[0], self.in_channels, *weight.shape[2:])
        zeros = weight.new_zeros(shape)
        return zeros.index_copy(1, self.index.to(weight.device), weight)


class LayerOp(nn.Module, ABC):
    """Base class: a layer of the IR with per-unit parameters."""

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__()
        self.layer = layer
        self.kept = kept
        self.in_channels = in_channels

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        return []

    @abstractmethod
    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Joint execution: the whole layer from its whole inputs."""

    @abstractmethod
    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        """Compute ``stripes`` (which share one kept-input set) from their gathered input."""


class ConvOp(LayerOp):
    """Convolution (no bias) + BatchNorm (+ ReLU)."""

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        k = layer.kernel
        self.weight = nn.ParameterList(
            nn.Parameter(torch.empty(c, len(kept_j), k, k))
            for c, kept_j in zip(layer.stripes, kept, strict=True)
        )
        self.bn_weight = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in layer.stripes)
        self.bn_bias = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in layer.stripes)
        self.register_buffer("running_mean", torch.zeros(layer.channels))
        self.register_buffer("running_var", torch.ones(layer.channels))
        self.assembly = [_Assembly(kept_j, in_channels) for kept_j in kept]
        fan_out = layer.channels * k * k
        for weight in self.weight:
            nn.init.normal_(weight, std=(2.0 / fan_out) ** 0.5)  # He init, fan-out mode

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        return [self.weight[stripe], self.bn_weight[stripe], self.bn_bias[stripe]]

    def dense_weight(self) -> Tensor:
        blocks = [a.place(w) for a, w in zip(self.assembly, self.weight, strict=True)]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0)

    def _affine(self, parameters: nn.ParameterList) -> Tensor:
        return parameters[0] if len(parameters) == 1 else torch.cat(list(parameters))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        layer = self.layer
        x = aggregate(layer, inputs)
        y = F.conv2d(x, self.dense_weight(), stride=layer.stride, padding=layer.kernel // 2)
        y = F.batch_norm(
            y,
            self.running_mean,
            self.running_var,
            self._affine(self.bn_weight),
            self._affine(self.bn_bias),
            self.training,
            BN_MOMENTUM,
            BN_EPS,
        )
        return F.relu(y) if layer.relu else y

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        layer = self.layer
        weights = [self.weight[j] for j in stripes]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights, dim=0)
        y = F.conv2d(x, weight, stride=layer.stride, padding=layer.kernel // 2)
        offsets = layer.offsets()
        outputs, start = [], 0
        for j in stripes:
            width = layer.stripes[j]
            rows = slice(offsets[j], offsets[j] + width)
            out = F.batch_norm(
                y[:, start : start + width],
                self.running_mean[rows],
                self.running_var[rows],
                self.bn_weight[j],
                self.bn_bias[j],
                self.training,
                BN_MOMENTUM,
                BN_EPS,
            )
            outputs.append(F.relu(out) if layer.relu else out)
            start += width
        return outputs


class AddOp(LayerOp):
    """Residual sum of the inputs (+ ReLU); stripe j adds stripe j of each input."""

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        y = aggregate(self.layer, inputs)
        return F.relu(y) if self.layer.relu else y

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        y = F.relu(x) if self.layer.relu else x
        return [y]


class MaxPoolOp(LayerOp):
    """3×3 stride-2 max pooling, per channel."""

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return F.max_pool2d(aggregate(self.layer, inputs), 3, self.layer.stride, 1)

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return [F.max_pool2d(x, 3, self.layer.stride, 1)]


class HeadOp(LayerOp):
    """Global average pooling + a linear classifier over the kept input channels."""

    index: Tensor

    def __init__(self, layer: Layer, kept: list[list[int]], in_channels: int):
        super().__init__(layer, kept, in_channels)
        (kept_0,) = kept
        self.weight = nn.Parameter(torch.empty(layer.channels, len(kept_0)))
        self.bias = nn.Parameter(torch.zeros(layer.channels))
        nn.init.normal_(self.weight, std=0.01)
        self.register_buffer("index", torch.tensor(kept_0, dtype=torch.long), persistent=False)
        self.full = kept_0 == list(range(in_channels))

    def unit_parameters(self, stripe: int) -> list[nn.Parameter]:
        return [self.weight, self.bias]

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        pooled = aggregate(self.layer, [t.mean(dim=(2, 3)) for t in inputs])  # [B, C_in]
        if not self.full:
            pooled = pooled.index_select(1, self.index)
        return F.linear(pooled, self.weight, self.bias)  # [B, classes]

    def forward_units(self, x: Tensor, stripes: Sequence[int]) -> list[Tensor]:
        return [F.linear(x, self.weight, self.bias)]


OPS: dict[str, type[LayerOp]] = {
    "conv": ConvOp,
    "add": AddOp,
    "maxpool": MaxPoolOp,
    "head": HeadOp,
}
