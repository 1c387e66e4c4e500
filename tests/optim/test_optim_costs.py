"""What a GPU punishes, checked on the CPU: op count, host-device syncs, gradient strides.

`fill_grad`'s combination must cost a fixed number of dispatched ops whatever the number of
parameter tensors, read device data on the host at most once per step (never for ``sgd`` or
``greedy``), and write gradients with their parameters' strides.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nestdsl.optim import fill_grad
from nestdsl.profiling import DispatchCounter

COMBINING = ("sgd-norm", "osgd", "osgd-norm")


class Stack(nn.Module):
    """Three nested stages of `depth` linear layers each (stage k reads stages 1..k)."""

    def __init__(self, depth: int, width: int = 6, n: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(
            nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)]) for _ in range(n)
        )
        self.n = n

    def stage_parameters(self, k: int) -> list[nn.Parameter]:
        return [p for block in self.blocks[:k] for p in block.parameters()]

    def losses(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, losses = x, []
        for block in self.blocks:
            out = torch.tanh(block(out))
            losses.append(out.square().mean())
        return losses


def stage_lists(net: Stack) -> list[list[nn.Parameter]]:
    return [net.stage_parameters(k) for k in range(1, net.n + 1)]


def counted(net: Stack, x: torch.Tensor, strategy: str | None) -> DispatchCounter:
    """Ops and syncs of the forward plus `fill_grad` (None: the bare per-stage backwards), in
    a step after the first: the first builds the layout and its `.grad` views once."""
    stages = stage_lists(net)
    active = 2 if strategy == "greedy" else None
    if strategy is not None:
        fill_grad(net.losses(x), stages, strategy, active_stage=active)
    with DispatchCounter() as counter:
        counter.mark(x, *net.parameters())
        losses = net.losses(x)
        if strategy is None:
            for i, loss in enumerate(losses):
                torch.autograd.grad(loss, stages[i], retain_graph=i < net.n - 1)
        else:
            fill_grad(losses, stages, strategy, active_stage=active)
    return counter


@pytest.mark.parametrize("strategy", COMBINING)
def test_combination_ops_do_not_grow_with_parameter_tensors(strategy):
    x = torch.randn(4, 6)
    extra, on_device = [], []
    for depth in (2, 8):
        net = Stack(depth)
        step, bare = counted(net, x, strategy), counted(net, x, None)
        extra.append(step.ops - bare.ops)
        on_device.append(step.device_ops - bare.device_ops)
    assert extra[0] == extra[1], extra
    # rows, Gram, transfer and writes; the rest is n×n host math on the transferred Gram
    assert max(on_device) <= 24, on_device


@pytest.mark.parametrize(
    ("strategy", "syncs"), [("sgd", 0), ("greedy", 0), *((s, 1) for s in COMBINING)]
)
def test_at_most_one_sync_per_step(strategy, syncs):
    assert counted(Stack(2), torch.randn(4, 6), strategy).syncs == syncs


def test_counter_sees_syncs_and_ignores_host_math():
    x = torch.randn(3)
    with DispatchCounter() as counter:
        counter.mark(x)
        y = (x * 2).sum()
        float(y)  # device read: a sync
        host = y.to("cpu", copy=True)  # the transfer: a sync
        float(host * 3)  # host math: free
        float(torch.zeros(2).sum())  # data from nothing: free
    assert counter.syncs == 2
    assert counter.by_op["aten.mul.Tensor"] == 2


class Convs(nn.Module):
    """Two nested stages of convolutions, run in channels_last like on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 4, 3, padding=1)

    def losses(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.first(x))
        b = self.second(a)
        return [a.mean(), b.square().mean()]


@pytest.mark.parametrize("strategy", ["sgd", "greedy", *COMBINING])
@pytest.mark.parametrize("reduce", [None, lambda flat: flat * 1.0])
def test_gradients_keep_parameter_strides(strategy, reduce):
    net = Convs().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    stages = [list(net.first.parameters()), list(net.parameters())]
    fill_grad(
        net.losses(x),
        stages,
        strategy,
        active_stage=2 if strategy == "greedy" else None,
        reduce=reduce,
    )
    weight = net.second.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert weight.grad is not None and weight.grad.stride() == weight.stride()


@pytest.mark.parametrize("strategy", ["sgd", *COMBINING])
def test_loss_scale_gives_scaled_direction_of_true_gradients(strategy):
    """With losses multiplied by S and `loss_scale=S`, `.grad` is S × the unscaled direction."""
    net, x = Stack(2), torch.randn(4, 6)
    fill_grad(net.losses(x), stage_lists(net), strategy)
    expected = [p.grad.clone() * 1024.0 for p in net.parameters()]
    scale = torch.tensor(1024.0)
    losses = [loss * scale for loss in net.losses(x)]
    fill_grad(losses, stage_lists(net), strategy, loss_scale=None if strategy == "sgd" else scale)
    for p, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-7)
