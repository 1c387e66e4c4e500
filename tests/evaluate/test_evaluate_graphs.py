"""CUDA-graph capture of the anytime stages: what can be checked without a GPU (the
replays themselves are checked in tests/test_cuda.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import nestdsl
from nestdsl.compiler.network import NestedNet
from nestdsl.evaluate.graphs import GraphedAnytime, GraphedCall
from nestdsl.evaluate.latency import stage_latencies
from nestdsl.evaluate.runtime import Budget, serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from train_toy import TINY_SPEC


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
