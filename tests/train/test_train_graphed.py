"""``--cuda-graphs`` without a GPU: the refusals, the banner, that a run without it steps
eagerly, and the replays themselves on a CUDA graph emulator (``graph_emulator``: aten ops
recorded and replayed on the memory they wrote). tests/test_cuda.py runs them on a GPU."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from graph_emulator import emulated_cuda
from torch import nn
from train_toy import make_toy
from typer.testing import CliRunner

import nestdsl
from nestdsl.cli.app import app
from nestdsl.diagnostics import NestError
from nestdsl.train import engine, graphed, train
from nestdsl.train.batch_step import StepPlan, mode_of, train_step
from nestdsl.train.config import RUNTIME_FIELDS, make_config
from nestdsl.train.devices import Runtime
from nestdsl.train.graphed import WARMUP, GraphedSteps, check_graphable, graphs_text, stepper

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "specs" / "digits_width.nest")


@pytest.mark.parametrize(
    ("options", "device", "processes", "message"),
    [
        ({}, "cpu", 1, "records GPU kernels, and this run trains on cpu"),
        ({}, "cuda", 2, "trains in one process, and this run has 2"),
        ({"torch_compile": True}, "cuda", 1, "--cuda-graphs and --torch-compile"),
    ],
)
def test_what_cannot_be_graphed_is_refused_before_the_run(
    options: dict[str, bool], device: str, processes: int, message: str
) -> None:
    config = make_config(cuda_graphs=True, **options)
    with pytest.raises(NestError, match=f"T020.*{message}"):
        check_graphable(config, torch.device(device), processes)
    check_graphable(make_config(**options), torch.device(device), processes)  # off: no check


def test_a_cpu_run_with_cuda_graphs_is_a_clear_error() -> None:
    for extra in (["--dry-run"], ["--epochs", "1", "-q"]):
        result = CliRunner().invoke(
            app, ["train", SPEC, "--cuda-graphs", "--device", "cpu", *extra]
        )
        assert result.exit_code == 1, result.output
        assert "error[T020]" in result.output and "Traceback" not in result.output


def test_the_banner_says_what_is_replayed() -> None:
    assert graphs_text(make_config()) is None
    assert "replayed from a CUDA graph" in (graphs_text(make_config(cuda_graphs=True)) or "")
    assert "cuda_graphs" in RUNTIME_FIELDS  # a resumed run may switch it: it learns the same


def test_without_cuda_graphs_the_steps_are_eager() -> None:
    plan, runtime = object(), Runtime(torch.device("cpu"), None, channels_last=False)
    steps = stepper(plan, runtime, False)  # type: ignore[arg-type]
    assert isinstance(steps, partial) and steps.func is train_step
    assert steps.args == (plan, runtime)
    with pytest.raises(ValueError, match="need a CUDA device, and the run is on cpu"):
        stepper(plan, runtime, True)  # type: ignore[arg-type]


def steps_of(
    strategy: str,
    graph: str,
    graphed: bool,
    monkeypatch: pytest.MonkeyPatch,
    bank: bool,
    move_before: int | None = None,
    zero_grad: bool = False,
    spec: str = "digits_width_depth",
) -> tuple[list[list[torch.Tensor]], dict[str, torch.Tensor], GraphedSteps | None]:
    """Nine steps of ``spec`` from the same start (batch shapes 16 and 8); with ``graphed``,
    through ``GraphedSteps`` on the emulated CUDA graph; ``move_before``: every parameter
    gets new memory before that step; ``zero_grad``: the loop calls ``optimizer.zero_grad()``
    (gradients set to None) before every step."""
    torch.manual_seed(1)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / f"{spec}.nest")).train()
    n = net.num_stages
    stages = [net.stage_parameters(k) for k in range(1, n + 1)]
    active = None
    if strategy == "greedy":  # phase 2 of Algorithm 1
        stages, active = stages[:2], 2
    optimizer = torch.optim.SGD(list(dict.fromkeys(net.parameters())), lr=0.05, momentum=0.9)
    mode = (
        "greedy"
        if strategy == "greedy"
        else mode_of(make_config(strategy=strategy, task_graph=graph), "cuda")
    )
    plan = StepPlan(mode, net, strategy, stages, optimizer, active_stage=active, capture=net.bank)
    runtime = Runtime(torch.device("cuda"), None, channels_last=False)  # on the CPU, emulated
    step = None
    if graphed:
        emulated_cuda(monkeypatch, net)
        step = GraphedSteps(plan, runtime)
    run = step or partial(train_step, plan, runtime)
    torch.manual_seed(2)
    sizes = [16, 8, 16, 16, 16, 16, 8, 16, 16]
    batches = [(torch.randn(b, *net.input_shape), torch.randint(0, 10, (b,))) for b in sizes]
    losses = []
    with net.bank.gathering(bank, "cpu"):
        for i, (x, y) in enumerate(batches):
            if i == move_before:
                for p in net.parameters():
                    p.data = p.data.clone()
            if zero_grad:
                optimizer.zero_grad()
            losses.append(run(x, y))
    return losses, {k: v.clone() for k, v in net.state_dict().items()}, step


@pytest.mark.parametrize(
    ("strategy", "graph", "bank"),
    [
        ("sgd", "auto", False),
        ("sgd", "auto", True),
        ("osgd", "anytime", False),
        ("osgd", "joint", True),
        ("osgd-norm", "joint", False),
        ("greedy", "auto", False),
    ],
)
def test_replayed_steps_train_exactly_as_eager_steps(
    strategy: str, graph: str, bank: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CUDA graph emulator (``graph_emulator``: the recorded aten ops replayed on the
    memory they wrote, Python not run again): warm-up, a capture of the common batch shape,
    replays, an eager batch of the other shape, replays again, give eager training's losses
    and weights, bit for bit. With ``bank``, the weight bank gathers (as on a GPU) and hands
    its gradient over in one piece."""
    eager_losses, eager_state, _ = steps_of(strategy, graph, False, monkeypatch, bank)
    losses, state, step = steps_of(strategy, graph, True, monkeypatch, bank)
    assert step is not None and (step.captures, step.eager_steps, step.replays) == (1, 5, 4)
    for mine, theirs in zip(losses, eager_losses, strict=True):
        assert torch.equal(torch.stack(mine), torch.stack(theirs))
    for key, value in eager_state.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize(
    "spec",
    [
        "digits_width",
        "digits_depth",
        "digits_even_width",
        "digits_densenet_depth",
        "digits_eann",
        "digits_mobilenet_width",
        "digits_se_width",
    ],
)
@pytest.mark.parametrize("graph", ["anytime", "joint"])
def test_every_digits_architecture_trains_from_replays(
    spec: str, graph: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """osgd through either graph on every other digits spec (DenseNet, cascade, depthwise,
    squeeze-excitation layers...): nothing in a step reads the device, and replays train
    exactly as eager steps do."""
    eager_losses, eager_state, _ = steps_of("osgd", graph, False, monkeypatch, True, spec=spec)
    losses, state, step = steps_of("osgd", graph, True, monkeypatch, True, spec=spec)
    assert step is not None and step.replays == 4
    for mine, theirs in zip(losses, eager_losses, strict=True):
        assert torch.equal(torch.stack(mine), torch.stack(theirs))
    for key, value in eager_state.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("strategy", ["sgd", "osgd", "greedy"])
def test_a_loop_that_sets_gradients_to_none_still_trains(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``optimizer.zero_grad()`` before each step (the usual loop) drops the gradients a replay
    writes; the step gives them back before the optimizer reads them."""
    eager_losses, eager_state, _ = steps_of(strategy, "auto", False, monkeypatch, False)
    losses, state, _ = steps_of(strategy, "auto", True, monkeypatch, False, zero_grad=True)
    for mine, theirs in zip(losses, eager_losses, strict=True):
        assert torch.equal(torch.stack(mine), torch.stack(theirs))
    for key, value in eager_state.items():
        assert torch.equal(state[key], value), key


def test_parameters_moved_to_new_memory_are_captured_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eager_losses, eager_state, _ = steps_of("sgd", "auto", False, monkeypatch, False, 7)
    losses, state, step = steps_of("sgd", "auto", True, monkeypatch, False, 7)
    assert step is not None and (step.captures, step.replays) == (2, 4)
    for mine, theirs in zip(losses, eager_losses, strict=True):
        assert torch.equal(torch.stack(mine), torch.stack(theirs))
    for key, value in eager_state.items():
        assert torch.equal(state[key], value), key


class _ReadsOnTheHost(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().mean())  # a host read: fine eagerly, not inside a capture
        return self.linear(x.flatten(1)) / scale


def test_a_step_that_reads_the_device_cannot_be_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _ReadsOnTheHost()
    params = list(net.parameters())
    plan = StepPlan("standalone", net, "sgd", [params], torch.optim.SGD(params, lr=0.1))
    emulated_cuda(monkeypatch, net)
    step = GraphedSteps(plan, Runtime(torch.device("cuda"), None, channels_last=False))
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    for _ in range(WARMUP):
        step(x, y)
    with pytest.raises(NestError, match=r"T020.*cannot be recorded as a CUDA graph"):
        step(x, y)


@pytest.mark.parametrize("strategy", ["sgd", "osgd", "greedy"])
def test_a_run_with_cuda_graphs_learns_exactly_what_an_eager_run_learns(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine with ``cuda_graphs=True`` on the emulated graphs (the device checks off):
    every epoch's losses and the final weights equal an eager run's. Batches of 16 from 150
    training examples end each epoch on a batch of 6 (eager); greedy captures once per
    phase; validation runs between epochs."""
    options = {"data": "synthetic:150", "batch_size": 16, "lr": 0.05, "device": "cpu"}
    options |= {"epochs": 2, "strategy": strategy}
    eager_net = make_toy()
    eager = train(eager_net, make_config(**options), progress=False)
    net = make_toy()
    monkeypatch.setattr(engine, "check_graphable", lambda *args: None)
    monkeypatch.setattr(graphed, "_require_cuda", lambda device: None)
    graphs = emulated_cuda(monkeypatch, net)
    result = train(net, make_config(**options, cuda_graphs=True), progress=False)
    assert len(graphs) == (net.num_stages if strategy == "greedy" else 1)
    assert all(graph.replays == 15 for graph in graphs)  # 18 full batches a phase, 3 eager
    assert [r.train_loss for r in result.history] == [r.train_loss for r in eager.history]
    for key, value in eager_net.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


@pytest.mark.parametrize(
    "block",
    [
        lambda x: float(x.sum()),  # a host read
        lambda x: x[x > 0],  # an output sized by the data
        lambda x: x + torch.tensor([1.0]),  # a tensor built from host data
        lambda x: x.to("cpu", copy=True),  # a copy to the host
    ],
)
def test_the_emulator_refuses_what_a_capture_refuses(
    block: Callable[[torch.Tensor], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulated_cuda(monkeypatch, nn.Module())
    x = torch.randn(4)
    with (
        pytest.raises(RuntimeError, match="not permitted when stream is capturing"),
        torch.cuda.graph(torch.cuda.CUDAGraph()),
    ):
        block(x)
