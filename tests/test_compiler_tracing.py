"""``torch.compile`` sees a compiled network whole: no graph breaks, the same results.

A graph break splits what inductor can fuse, so a network that breaks in every layer gains
nothing from compiling (the per-layer plan lookup once did exactly that). The joint pass, in
training and in evaluation, and every anytime stage (``advance``) must trace into one graph,
on a fresh network whose plans are made during tracing; and the traced graphs must compute
what eager execution does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch._dynamo
from spec_helpers import shipped_specs
from test_compiler_execution import close

import nestdsl

SPECS = [p for p in shipped_specs() if p.stem.startswith("digits")]
"""The digits specs hold every kind of layer and nesting the CIFAR-size ones do (tracing a
100-layer network takes minutes on a CPU; all of them were traced clean once, by hand)."""
IDS = [p.stem for p in SPECS]


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Each test traces from scratch and leaves no compiled code behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def graph_breaks(fn: object, *args: object) -> int:
    return int(torch._dynamo.explain(fn)(*args).graph_break_count)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_joint_pass_and_every_stage_trace_without_graph_breaks(path: Path) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path)).eval()
    x = torch.randn(2, *net.input_shape)
    assert graph_breaks(net, x) == 0
    state = net.start(x)
    for stage in range(net.num_stages):
        torch._dynamo.reset()
        assert graph_breaks(net.advance, state) == 0, f"stage {stage + 1}"


def test_compiled_network_computes_what_eager_does() -> None:
    """Joint training pass (outputs and gradients), evaluation, and compiled stages stepped
    one at a time, through AOTAutograd (the part of torch.compile that is ours to get right:
    inductor's kernels are PyTorch's)."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(Path("specs/digits_width_depth.nest")))
    x = torch.randn(4, *net.input_shape)
    params = list(net.parameters())

    def joint_grads(model: torch.nn.Module) -> list[torch.Tensor]:
        outputs = model(x)
        grads = torch.autograd.grad(sum(o.square().mean() for o in outputs), params)
        return [t.detach() for t in (*outputs, *grads)]

    assert graph_breaks(net.train(), x) == 0  # fresh: its plans are made while tracing
    torch._dynamo.reset()
    reference = joint_grads(net)
    compiled = torch.compile(net, backend="aot_eager")
    assert all(map(close, joint_grads(compiled), reference))

    net.eval()
    with torch.no_grad():
        expected = list(net.anytime(x))
        assert all(map(close, compiled(x), net(x)))
        advance = torch.compile(net.advance, backend="aot_eager")
        state = net.start(x)
        stepped = [advance(state) for _ in range(net.num_stages)]
    assert all(map(close, stepped, expected))
