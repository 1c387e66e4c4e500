"""CUDA-graph capture of the anytime stages and of one module call, without a GPU: the
refusals, and the replays on the CUDA graph emulator (``graph_emulator``: aten ops recorded
and replayed on the memory they wrote, Python not run again). tests/test_cuda.py checks the
replays on a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import nestdsl
from nestdsl.compiler.network import NestedNet
from nestdsl.evaluate import graphs
from nestdsl.evaluate.graphs import GraphedAnytime, GraphedCall
from nestdsl.evaluate.latency import stage_latencies
from nestdsl.evaluate.runtime import Budget, serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from graph_emulator import emulated_cuda
from train_toy import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def net() -> NestedNet:
    return nestdsl.compile(nestdsl.loads(TINY_SPEC)).eval()


def test_a_capture_needs_a_cuda_input(net: NestedNet) -> None:
    x = torch.zeros(1, *net.input_shape)
    with pytest.raises(ValueError, match="CUDA graphs need the network and input on a CUDA"):
        GraphedAnytime(net, x)
    with pytest.raises(ValueError, match="CUDA graphs need the network and input on a CUDA"):
        GraphedCall(net.subnetwork(1), x)


@pytest.mark.parametrize("incremental", [True, False])
def test_graphed_latency_on_the_cpu_is_refused(net: NestedNet, incremental: bool) -> None:
    x = torch.zeros(2, *net.input_shape)
    net.train()
    with pytest.raises(ValueError, match="CUDA device"):
        stage_latencies(net, x, repeats=1, warmup=0, incremental=incremental, cuda_graphs=True)
    assert net.training  # the mode is restored after the refusal


def test_serving_with_cuda_graphs_on_the_cpu_is_refused(net: NestedNet) -> None:
    """The refusal comes before anything is touched: the network keeps its mode."""
    x = torch.zeros(2, *net.input_shape)
    net.train()
    with pytest.raises(ValueError, match="CUDA device"):
        serve(net, x, Budget(macs=10**12), cuda_graphs=True)
    assert net.training


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> NestedNet:
    """``digits_width_depth`` on the CPU, with CUDA graphs emulated (and the CUDA check off)."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).eval()
    monkeypatch.setattr(graphs, "_require_cuda", lambda example: None)
    emulated_cuda(monkeypatch, net)
    return net


def test_replayed_stages_continue_from_the_stages_before_them(emulated: NestedNet) -> None:
    net = emulated
    inputs = [torch.randn(4, *net.input_shape) for _ in range(3)]
    graphed = GraphedAnytime(net, inputs[0])
    for x in inputs[1:]:
        with torch.no_grad():
            expected = list(net.anytime(x))
        got = list(graphed.anytime(x))
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    state = graphed.start(inputs[1])
    first = graphed.advance(state)
    graphed.start(inputs[2])  # a newer input: the older state is refused
    with pytest.raises(ValueError, match="one input at a time"):
        graphed.advance(state)
    assert not torch.equal(first, graphed.advance(graphed.start(inputs[2])))


def test_a_replayed_call_gives_what_the_module_gives(emulated: NestedNet) -> None:
    net = emulated
    x = torch.randn(4, *net.input_shape)
    sub = net.subnetwork(2).eval()
    for module in (sub, net):
        graphed = GraphedCall(module, x)
        for _ in range(2):
            y = torch.randn_like(x)
            with torch.no_grad():
                expected = module(y)
            got = graphed(y)
            if isinstance(expected, torch.Tensor):
                assert isinstance(got, torch.Tensor) and torch.equal(got, expected)
            else:
                assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    with pytest.raises(ValueError, match="capture again"):
        graphed(x[:2])
    for p in net.parameters():
        p.data = p.data.clone()
    with pytest.raises(RuntimeError, match="moved to new memory"):
        graphed(x)
