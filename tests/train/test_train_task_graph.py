"""Per-task gradients through the anytime graph or the joint graph: the same gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_toy import make_toy

import nestdsl
from nestdsl.train import train
from nestdsl.train.batch_step import FORWARDS, StepPlan, mode_of, train_step
from nestdsl.train.config import make_config, task_graph_of, unused_options
from nestdsl.train.devices import Runtime
from nestdsl.train.progress import strategy_text

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.mark.parametrize(
    ("strategy", "graph", "device", "mode"),
    [
        ("osgd", "auto", "cpu", "anytime"),
        ("osgd", "auto", "cuda", "joint"),
        ("sgd-norm", "joint", "cpu", "joint"),
        ("osgd-norm", "anytime", "cuda", "anytime"),
        ("osgd", "auto", "mps", "anytime"),
        ("sgd", "anytime", "cpu", "joint"),
        ("greedy", "joint", "cuda", "greedy"),
    ],
)
def test_the_task_graph_decides_the_mode_of_per_task_strategies(
    strategy: str, graph: str, device: str, mode: str
) -> None:
    config = make_config(strategy=strategy, task_graph=graph)
    assert mode_of(config, device) == mode


def grads_after_step(name: str, mode: str, strategy: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(SPECS / f"{name}.nest")).train()
    torch.manual_seed(1)
    x = torch.randn(8, *net.input_shape)
    y = torch.randint(0, net.num_classes, (8,))
    stages = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
    params = list(dict.fromkeys(net.parameters()))
    optimizer = torch.optim.SGD(params, lr=0.0)
    plan = StepPlan(mode, net, strategy, stages, optimizer)
    train_step(plan, Runtime(torch.device("cpu"), None, channels_last=False), x, y)
    return [p.grad.clone() for p in params if p.grad is not None]


@pytest.mark.parametrize(
    "name", ["digits_width", "digits_width_depth", "digits_eann", "digits_densenet_depth"]
)
@pytest.mark.parametrize("strategy", ["osgd", "sgd-norm"])
def test_both_graphs_give_the_same_combined_gradient(name: str, strategy: str) -> None:
    anytime = grads_after_step(name, "anytime", strategy)
    joint = grads_after_step(name, "joint", strategy)
    assert len(anytime) == len(joint)
    for a, b in zip(anytime, joint, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_both_forwards_exist() -> None:
    assert {"anytime", "joint"} <= set(FORWARDS)


def test_a_resumed_run_may_change_the_task_graph(tmp_path) -> None:
    fast = {"data": "synthetic:128", "batch_size": 32, "device": "cpu", "strategy": "osgd"}
    run = tmp_path / "run"
    train(make_toy(), make_config(**fast, epochs=2), run, progress=False, until_epoch=1)
    result = train(
        make_toy(),
        make_config(**fast, epochs=2, task_graph="joint"),
        run,
        progress=False,
        resume=True,
    )
    assert result.epochs_done == 2


def test_the_task_graph_is_flagged_where_no_per_task_gradients_are_taken() -> None:
    (warning,) = unused_options(make_config(strategy="sgd", task_graph="joint"), {"task_graph"})
    assert warning.code == "T016" and "only sgd-norm, osgd, osgd-norm and mtl" in warning.message
    assert not unused_options(make_config(strategy="osgd", task_graph="joint"), {"task_graph"})


def test_the_banner_names_the_graph_of_per_task_strategies() -> None:
    assert strategy_text(make_config(strategy="osgd"), "cuda") == "osgd (joint graph)"
    assert strategy_text(make_config(strategy="sgd-norm"), "cpu") == "sgd-norm (anytime graph)"
    assert strategy_text(make_config(strategy="sgd", task_graph="joint"), "cpu") == "sgd"
    assert task_graph_of(make_config(strategy="osgd", standalone=2), "cuda") is None
