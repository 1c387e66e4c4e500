"""The weight bank gathers what the layers would assemble, and stays out of the way.

On a CPU the layers assemble their own pieces (``PER_LAYER_DEVICES``) and the parameters are
not tied, so these tests switch the bank on for the CPU: joint execution must then give bit
for bit the outputs and gradients of per-layer assembly on every shipped spec and plan, keep
doing so after optimizer steps, dtype and layout changes, state-dict loads and under
autocast, and fall back to per-layer assembly whenever the parameters are not the bank's
views (``functional_call``, tracing).
"""

from __future__ import annotations

import gc
import io
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
from spec_helpers import shipped_specs
from test_compiler_execution import close
from torch.func import functional_call

import nestdsl
from nestdsl.compiler.assembly import PER_LAYER_DEVICES
from nestdsl.compiler.plans import EXECUTIONS
from nestdsl.memory_order import channels_last, flatten
from nestdsl.optim import fill_grad
from nestdsl.profiling import DispatchCounter

SPECS = shipped_specs()
IDS = [p.stem for p in SPECS]
DIGITS = Path(__file__).parent.parent / "specs"

VIEWS = {
    "aten.view.default",
    "aten.slice.Tensor",
    "aten.split_with_sizes.default",
    "aten.permute.default",
    "aten.as_strided.default",
    "aten.detach.default",
    "aten.t.default",
    "aten.expand.default",
    "aten._unsafe_view.default",
    "aten.unsqueeze.default",
}
"""Ops that only make views: no kernel on any device."""


def compiled(path: Path, bank: bool = True) -> nestdsl.NestedNet:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path))
    if bank:
        net.bank.per_layer_devices = frozenset()
        net.bank.retie()
    return net


def run(
    net: nestdsl.NestedNet, x: torch.Tensor, bank: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs and gradients of every parameter, with the bank or without it."""
    with net.bank.gathering(bank, x.device.type):
        outputs = net(x)
        loss = sum(((k + 1) * out.square()).mean() for k, out in enumerate(outputs))
        grads = torch.autograd.grad(loss, list(net.parameters()))
    return [out.detach() for out in outputs], list(grads)


def gathered(net: nestdsl.NestedNet, x: torch.Tensor) -> bool:
    """Whether a joint pass on ``x`` takes its pieces from the bank."""
    return bool(net.bank.assemble(x.device.type))


def test_the_cpu_assembles_per_layer_by_default() -> None:
    net = compiled(DIGITS / "digits_width.nest", bank=False)
    assert "cpu" in PER_LAYER_DEVICES
    assert not gathered(net, torch.randn(2, *net.input_shape))
    assert net.bank.flat is None  # and the parameters keep storages of their own
    storages = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert len(storages) == len(list(net.parameters()))


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_the_bank_gives_what_the_layers_assemble(path: Path) -> None:
    """Every shipped spec, every execution mode: the same outputs and gradients, bit for bit
    (eval mode, as in test_compiler_execution; training mode below)."""
    net = compiled(path).eval()
    x = torch.randn(2, *net.input_shape)
    assert gathered(net, x) == bool(net.bank.layers)
    for execution in EXECUTIONS:
        net.set_execution(execution)
        outputs, grads = run(net, x, bank=True)
        ref_outputs, ref_grads = run(net, x, bank=False)
        assert all(torch.equal(a, b) for a, b in zip(outputs, ref_outputs, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))


@pytest.mark.parametrize("name", ["digits_width", "digits_width_depth", "digits_se_width"])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_inference_without_autograd_gathers_the_same_pieces(name: str, mode: Any) -> None:
    """Without autograd the bank gathers directly, not through its autograd Function."""
    net = compiled(DIGITS / f"{name}.nest").eval()
    x = torch.randn(2, *net.input_shape)
    outputs = {}
    for bank in (True, False):
        with mode(), net.bank.gathering(bank, "cpu"):
            assert gathered(net, x) == bank
            outputs[bank] = net(x)
    assert all(torch.equal(a, b) for a, b in zip(outputs[True], outputs[False], strict=True))


@pytest.mark.parametrize("name", ["digits_width", "digits_mobilenet_width", "digits_se_width"])
def test_training_mode_and_accumulated_gradients(name: str) -> None:
    """``.grad`` from ``backward`` (BatchNorm on batch statistics): the same gradients, each
    laid out like its parameter."""
    net = compiled(DIGITS / f"{name}.nest")
    x = torch.randn(4, *net.input_shape)
    grads = {}
    for bank in (True, False):
        net.zero_grad(set_to_none=True)
        with net.bank.gathering(bank, x.device.type):
            sum(out.square().mean() for out in net(x)).backward()
        grads[bank] = [p.grad for p in net.parameters()]
    for mine, theirs, p in zip(grads[True], grads[False], net.parameters(), strict=True):
        assert mine is not None and theirs is not None
        assert torch.equal(mine, theirs)
        assert mine.stride() == p.stride()


def test_parameters_stay_tied_through_optimizer_steps() -> None:
    """The optimizer writes the parameters in place: the next gather sees the new values."""
    net = compiled(DIGITS / "digits_width_depth.nest").eval()
    x = torch.randn(2, *net.input_shape)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        optimizer.zero_grad()
        sum(out.square().mean() for out in net(x)).backward()
        optimizer.step()
    assert net.bank.tied(net.bank.parameters())
    outputs, _ = run(net, x, bank=True)
    ref_outputs, _ = run(net, x, bank=False)
    assert all(torch.equal(a, b) for a, b in zip(outputs, ref_outputs, strict=True))


def test_dtype_and_layout_changes_retie_the_parameters() -> None:
    """``.double()`` and ``.to(memory_format=channels_last)`` give parameters new storage;
    the network ties them to a new flat tensor, keeping each one's layout."""
    net = compiled(DIGITS / "digits_width.nest").double()
    x = torch.randn(2, *net.input_shape, dtype=torch.float64)
    assert net.bank.flat is not None and net.bank.flat.dtype == torch.float64
    assert gathered(net, x)
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    bank = net.bank.parameters()
    spatial = [p for p in bank if p.dim() == 4 and min(p.shape[1], p.shape[-1]) > 1]
    assert spatial and all(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in spatial
    )
    x = x.contiguous(memory_format=torch.channels_last)
    assert gathered(net, x)
    outputs, grads = run(net, x, bank=True)
    ref_outputs, ref_grads = run(net, x, bank=False)
    assert all(close(a, b) for a, b in zip(outputs, ref_outputs, strict=True))
    assert all(close(a, b) for a, b in zip(grads, ref_grads, strict=True))


def test_state_dicts_load_into_the_bank() -> None:
    """A saved state dict holds the parameters' values (not the flat tensor); loading it,
    by copy or by assignment, leaves the parameters tied and the outputs those of the source."""
    source, target = compiled(DIGITS / "digits_width.nest"), compiled(DIGITS / "digits_width.nest")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    assert "bank" not in " ".join(source.state_dict())
    x = torch.randn(2, *source.input_shape)
    expected, _ = run(source, x, bank=False)
    for assign in (False, True):
        buffer.seek(0)
        target.load_state_dict(torch.load(buffer, weights_only=True), assign=assign)
        assert net_tied(target)
        outputs, _ = run(target, x, bank=True)
        assert all(torch.equal(a, b) for a, b in zip(outputs, expected, strict=True))


def test_the_bank_reads_the_parameters_the_layers_hold() -> None:
    """``WeightBank.parameters`` (read from the tables the parameters are registered in) is
    the layers' ``assembled_parameters``, also after a load by assignment replaced them."""
    net = compiled(DIGITS / "digits_width_depth.nest")

    def held() -> list[torch.Tensor]:
        return [p for layer in net.bank.layers.values() for p in layer.assembled_parameters()]

    assert all(a is b for a, b in zip(net.bank.parameters(), held(), strict=True))
    before = net.bank.parameters()
    net.load_state_dict(compiled(DIGITS / "digits_width_depth.nest").state_dict(), assign=True)
    after = net.bank.parameters()
    assert all(a is b for a, b in zip(after, held(), strict=True))
    assert not any(a is b for a, b in zip(after, before, strict=True))


def net_tied(net: nestdsl.NestedNet) -> bool:
    return net.bank.tied(net.bank.parameters())


def test_functional_call_substitutes_parameters() -> None:
    """Parameters replaced for one call are not the bank's views: the layers assemble the
    substitutes themselves, and gradients reach them."""
    net = compiled(DIGITS / "digits_width.nest")
    x = torch.randn(2, *net.input_shape)
    params = {name: torch.randn_like(p).requires_grad_() for name, p in net.named_parameters()}
    outputs = functional_call(net, params, (x,))
    reference = compiled(DIGITS / "digits_width.nest", bank=False)
    reference.load_state_dict({**reference.state_dict(), **params})
    assert all(close(a, b) for a, b in zip(outputs, reference(x), strict=True))
    sum(out.sum() for out in outputs).backward()
    assert all(p.grad is not None for p in params.values())


def test_compiling_traces_the_layers_assembly_without_graph_breaks() -> None:
    torch._dynamo.reset()
    net = compiled(DIGITS / "digits_width.nest").eval()
    x = torch.randn(2, *net.input_shape)
    try:
        explained = torch._dynamo.explain(net)(x)
        assert explained.graph_break_count == 0
        traced = torch.compile(net, backend="eager")(x)
        assert all(close(a, b) for a, b in zip(traced, net(x), strict=True))
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("name", ["digits_width", "resnet42_width"])
def test_one_gather_replaces_the_layers_assembly_kernels(name: str) -> None:
    """What the bank is for (a GPU pays per kernel launch), counted on the CPU: a dense-weight
    training step dispatches far fewer ops that launch kernels, and no host-device sync."""
    net = compiled(DIGITS / f"{name}.nest")
    net.set_execution("dense")
    x = torch.randn(2, *net.input_shape)
    kernels = {}
    for bank in (True, False):
        run(net, x, bank)  # the bank's index is built on the first pass
        with DispatchCounter() as counter:
            counter.mark(x, *net.parameters())
            run(net, x, bank)
        kernels[bank] = counter.ops - sum(n for op, n in counter.by_op.items() if op in VIEWS)
        assert counter.syncs == 0
    assert kernels[True] < 0.8 * kernels[False]


@pytest.mark.parametrize("name", ["digits_width", "digits_mobilenet_width"])
def test_under_autocast_the_bank_casts_what_the_convolutions_would(name: str) -> None:
    """Under autocast the bank hands the convolutions their weights (and biases) already in
    the lower precision, in one cast: the same outputs and gradients as autocast casting
    each layer's weight, and the BatchNorm parameters stay float32."""
    net = compiled(DIGITS / f"{name}.nest")
    x = torch.randn(4, *net.input_shape)
    runs = []
    for bank in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs, grads = run(net, x, bank)
            pieces = net.bank.assemble("cpu")
        runs.append((outputs, grads))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert all(g.dtype == torch.float32 for g in runs[0][1])
    assert {t.dtype for tensors in pieces.values() for t in tensors if t.dim() == 4} == {
        torch.bfloat16
    }
    assert {t.dtype for tensors in pieces.values() for t in tensors if t.dim() == 1} >= {
        torch.float32
    }


@pytest.mark.parametrize("low", [None, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_pieces_gradients_join_in_gather_order(low: torch.dtype | None, layout: Any) -> None:
    """``_Gather.join``: each piece's gradient in its memory order, zeros for a piece without
    one, the autocast pieces' lower precision promoted (the backward's first step)."""
    net = compiled(DIGITS / "digits_width_depth.nest").to(memory_format=layout)  # type: ignore[call-overload]
    with net.bank.gathering(True, "cpu"):
        net.bank.assemble("cpu")
    plan = next(iter(net.bank._plans.values()))
    torch.manual_seed(0)
    grads: list[torch.Tensor | None] = [None] * len(plan.order)
    for position, index in enumerate(plan.order):
        dtype = low if low is not None and position < plan.low else torch.float32
        shape = plan.shapes[position]
        grad = torch.randn(shape).to(dtype)
        if plan.channels_last[position]:
            grad = grad.contiguous(memory_format=torch.channels_last)
        grads[index] = None if position % 5 == 3 else grad
    joined = plan.join(grads, torch.zeros(1), torch.float32, low)
    expected = torch.cat(
        [
            torch.zeros(size) if grads[index] is None else flatten(grads[index], last).float()  # type: ignore[arg-type]
            for index, size, last in zip(plan.order, plan.sizes, plan.channels_last, strict=True)
        ]
    )
    assert any(plan.channels_last) == (layout is torch.channels_last)
    assert joined.dtype == torch.float32 and torch.equal(joined, expected)


# --- the bank's gradient handed over as one flat vector (fill_grad's ``capture``) ----------

FILLED = ("sgd", "sgd-norm", "osgd", "osgd-norm")


def filled(
    net: nestdsl.NestedNet, x: torch.Tensor, strategy: str, capture: bool, **options: Any
) -> list[torch.Tensor | None]:
    """Every parameter's ``.grad`` after a joint forward and ``fill_grad`` (with the bank)."""
    net.zero_grad(set_to_none=True)
    stages = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
    with net.bank.gathering(True, x.device.type):
        losses = [(k + 1) * out.square().mean() for k, out in enumerate(net(x))]
        fill_grad(losses, stages, strategy, capture=net.bank if capture else None, **options)
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def test_capturing_hands_the_bank_gradient_over_in_flat_order() -> None:
    net = compiled(DIGITS / "digits_width_depth.nest").to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(2, *net.input_shape).contiguous(memory_format=torch.channels_last)
    reference = [g for g in run(net, x, bank=True)[1]]
    by_param = dict(zip(map(id, net.parameters()), reference, strict=True))
    with net.bank.gathering(True, "cpu"):
        loss = sum(((k + 1) * out.square()).mean() for k, out in enumerate(net(x)))
        with net.bank.capturing() as sink:
            loss.backward()
    params = net.bank.flat_parameters()
    assert len(sink) == 1 and all(p.grad is None for p in params)
    expected = torch.cat([flatten(by_param[id(p)], channels_last(p)) for p in params])
    assert torch.equal(sink[0], expected)
    assert any(p.grad is not None for p in net.parameters())  # the others as usual


@pytest.mark.parametrize("name", ["digits_width", "digits_width_depth", "digits_se_width"])
@pytest.mark.parametrize("strategy", FILLED)
def test_captured_gradients_give_fill_grad_the_same_direction(name: str, strategy: str) -> None:
    net = compiled(DIGITS / f"{name}.nest")
    x = torch.randn(4, *net.input_shape)
    mine, theirs = (filled(net, x, strategy, capture) for capture in (True, False))
    for p, a, b in zip(net.parameters(), mine, theirs, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert close(a, b) and a.stride() == p.stride()


@pytest.mark.parametrize("strategy", ["sgd", "osgd-norm"])
def test_capturing_keeps_reduction_loss_scale_and_layout(strategy: str) -> None:
    """With a reduce hook, a GradScaler's scale and channels_last parameters (converted after
    a first step, so the layout cached for their old memory must not be reused)."""
    net = compiled(DIGITS / "digits_width_depth.nest")
    scale = None if strategy == "sgd" else torch.tensor(8.0)
    options = {"reduce": lambda flat: flat * 0.5, "loss_scale": scale}
    filled(net, torch.randn(4, *net.input_shape), strategy, True, **options)
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(4, *net.input_shape).contiguous(memory_format=torch.channels_last)
    mine, theirs = (filled(net, x, strategy, capture, **options) for capture in (True, False))
    for p, a, b in zip(net.parameters(), mine, theirs, strict=True):
        assert a is not None and b is not None
        assert close(a, b) and a.stride() == p.stride()


def test_capturing_saves_the_ops_of_a_gradient_per_parameter() -> None:
    """Without capture, each stage's backward makes a view per (non-vector) bank parameter
    and fill_grad copies them; with it, one gather per stage fills the columns."""
    net = compiled(DIGITS / "digits_width_depth.nest")
    x = torch.randn(2, *net.input_shape)
    counts = {}
    for capture in (True, False):
        filled(net, x, "osgd", capture)  # the first step builds the layout
        with DispatchCounter() as counter:
            counter.mark(x, *net.parameters())
            filled(net, x, "osgd", capture)
        counts[capture] = counter
    shaped = sum(p.dim() > 1 for p in net.bank.flat_parameters()) * net.num_stages
    views = {capture: c.by_op["aten.view.default"] for capture, c in counts.items()}
    assert views[True] <= views[False] - shaped, views
    assert counts[True].ops < counts[False].ops


def test_a_captured_networks_layouts_go_with_it() -> None:
    """Layouts made for a capture object live as long as it: deleting the network (and its
    bank) frees the parameters the layouts held."""
    net = compiled(DIGITS / "digits_width.nest")
    for strategy in ("sgd", "osgd"):
        filled(net, torch.randn(2, *net.input_shape), strategy, True)
    alive = weakref.ref(next(net.parameters()))
    del net
    gc.collect()
    assert alive() is None
