"""Every execution path computes what the straightforward one does, on every shipped spec.

Joint execution with the dense weight (pruned entries multiplied as zeros) is the reference;
block-wise execution, the per-layer ``auto`` choice and anytime execution must give the same
outputs and the same gradients. Also: assembling weights never reads host memory, so a joint
pass has no host-device synchronisation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from spec_helpers import shipped_specs
from test_properties import specs
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import nestdsl
from nestdsl.ast import Spec
from nestdsl.compiler.ops import ConvOp
from nestdsl.compiler.plans import EXECUTIONS
from nestdsl.profiling import DispatchCounter

SPECS = shipped_specs()
IDS = [p.stem for p in SPECS]
ROOT = Path(__file__).parent.parent


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(1.0, float(b.detach().abs().max()))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale))


def blockwise_layers(net: nestdsl.NestedNet) -> list[ConvOp]:
    return [op for op in net.ops.values() if isinstance(op, ConvOp) and op.shape is not None]


def outputs_and_grads(
    net: nestdsl.NestedNet, x: torch.Tensor, anytime: bool
) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    outputs = list(net.anytime(x)) if anytime else net(x)
    loss = sum(((k + 1) * out.square()).mean() for k, out in enumerate(outputs))
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return [out.detach() for out in outputs], grads


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_dense_blockwise_auto_and_anytime_agree(path: Path) -> None:
    """Outputs and gradients of every parameter (eval mode: BatchNorm of 8×8 inputs would be
    degenerate with batch statistics; training mode is covered in test_compiler.py)."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path)).eval()
    if not blockwise_layers(net):  # nothing to choose: every plan is the dense weight
        assert all(len(op.plan("cpu")) == 1 for op in net.ops.values() if isinstance(op, ConvOp))
        return
    c, h, w = net.input_shape
    x = torch.randn(2, c, min(h, 8), min(w, 8), generator=torch.Generator().manual_seed(1))
    net.set_execution("dense")
    reference = outputs_and_grads(net, x, anytime=False)
    runs = [(mode, False) for mode in EXECUTIONS if mode != "dense"] + [("auto", True)]
    for mode, anytime in runs:
        net.set_execution(mode)
        outputs, grads = outputs_and_grads(net, x, anytime)
        for a, b in zip(outputs, reference[0], strict=True):
            assert close(a, b), (mode, anytime)
        for a, b in zip(grads, reference[1], strict=True):
            assert close(a, b), (mode, anytime)


def test_blockwise_plans_are_used_on_wide_width_nested_layers() -> None:
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "resnet42_width.nest"))
    plans = [op.plan("cpu") for op in blockwise_layers(net)]
    assert sum(len(plan) > 1 for plan in plans) > len(plans) // 2
    net.set_execution("dense")
    assert all(len(op.plan("cpu")) == 1 for op in blockwise_layers(net))
    assert net.subnetwork(2).net.execution == "dense"
    with pytest.raises(ValueError, match="execution must be one of auto, dense, blockwise"):
        net.set_execution("sparse")  # type: ignore[arg-type]


class _Devices(TorchDispatchMode):
    """Records the device of every tensor any dispatched op reads."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        leaves, _ = tree_flatten((args, kwargs or {}))
        self.devices |= {t.device.type for t in leaves if isinstance(t, torch.Tensor)}
        return func(*args, **(kwargs or {}))


def test_scattered_kept_inputs_are_placed_without_host_tensors() -> None:
    """A unit whose kept inputs are not a prefix is placed by an index that moves with the
    module (a host index would be copied to the device on every pass)."""
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width.nest"))
    layer = next(op.layer for op in blockwise_layers(net) if op.in_channels == 32)
    kept = [list(range(8, 16)), list(range(24)), list(range(32))]
    op = ConvOp(layer, kept, 32).to("meta")
    recorder = _Devices()
    with recorder:
        op([torch.empty(2, 32, *layer.size, device="meta")])
    assert recorder.devices == {"meta"}


@pytest.mark.parametrize("spec", ["resnet42_width", "sparse_resnet98_alternating"])
def test_joint_forward_has_no_host_device_synchronisation(spec: str) -> None:
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / f"{spec}.nest"))
    x = torch.randn(1, *net.input_shape)[:, :, :8, :8]
    counter = DispatchCounter()
    counter.mark(x, *net.parameters(), *net.buffers())
    with counter:
        net(x)
    assert counter.syncs == 0
    assert "aten._to_copy.default" not in counter.by_op


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_execution_modes_agree_on_random_specs(spec: Spec) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(spec).eval()
    x = torch.randn(2, *net.input_shape)
    net.set_execution("dense")
    reference = outputs_and_grads(net, x, anytime=False)
    for mode in ("blockwise", "auto"):
        net.set_execution(mode)
        outputs, grads = outputs_and_grads(net, x, anytime=False)
        for a, b in zip([*outputs, *grads], [*reference[0], *reference[1]], strict=True):
            assert close(a, b), mode


@pytest.mark.parametrize("training", [False, True])
def test_units_normalised_together_or_apart_agree(training: bool) -> None:
    """Adjacent stripes share one BatchNorm call, split afterwards; stripes that are not
    adjacent get one call per run. Either way each stripe gets what it gets alone, and the
    running statistics move the same."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest"))
    net.train(training)
    op = net.op("s1.2")  # new at the last stage with all three stripes, from the same inputs
    assert isinstance(op, ConvOp) and len(op.layer.stripes) == 3
    x = torch.randn(4, op.in_channels, 16, 16)
    before = op.running_mean.clone(), op.running_var.clone()
    with torch.no_grad():
        together = op.forward_units(x, [0, 1, 2])
        after_together = op.running_mean.clone(), op.running_var.clone()
        op.running_mean.copy_(before[0]), op.running_var.copy_(before[1])
        apart = op.forward_units(x, [0, 2]) + op.forward_units(x, [1])
    assert close(apart[0], together[0]) and close(apart[1], together[2])
    assert close(apart[2], together[1])
    assert close(op.running_mean, after_together[0]) and close(op.running_var, after_together[1])
    if training:
        assert not torch.equal(after_together[0], before[0])


def test_anytime_reads_the_statistics_the_network_holds_now() -> None:
    """Anytime steps keep views of the BatchNorm statistics they read. After the buffers are
    replaced (``load_state_dict(assign=True)``, a dtype change) they read the new ones, and
    in training their updates land in the network's buffers as joint execution's do, also
    in a deep copy."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).eval()
    x = torch.randn(4, *net.input_shape)
    list(net.anytime(x))
    other = nestdsl.compile(net.ir)
    with torch.no_grad():
        for name, buffer in other.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.uniform_(0.5, 2.0)
    net.load_state_dict(other.state_dict(), assign=True)
    assert all(close(a, b) for a, b in zip(net.anytime(x), net(x), strict=True))
    net.double()
    assert all(close(a, b) for a, b in zip(net.anytime(x.double()), net(x.double()), strict=True))
    for anytime in (net, copy.deepcopy(net)):  # a copy's views are views of its buffers
        joint = copy.deepcopy(anytime).train()
        anytime.train()
        joint(x.double()), list(anytime.anytime(x.double()))
        for (name, a), b in zip(anytime.named_buffers(), joint.buffers(), strict=True):
            assert close(a, b), name


def test_anytime_steps_slice_the_statistics_once() -> None:
    """Each slice is a dispatched op (host time on a GPU): once the first pass has sliced the
    statistics, anytime steps of adjacent stripes slice nothing."""
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        list(net.anytime(x))
        with DispatchCounter() as counter:
            list(net.anytime(x))
    assert counter.by_op.get("aten.slice.Tensor", 0) == 0
