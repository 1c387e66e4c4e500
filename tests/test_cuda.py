"""The GPU paths, run where a CUDA device exists (skipped elsewhere; CI has no GPU).

What a GPU changes: every execution path runs on the device and must agree with the CPU;
training runs under autocast (bf16 from compute capability 8.0, fp16 with a GradScaler
before) on channels_last tensors; a stopped run resumes bit-identically there too; and the
command line trains and evaluates with ``--device cuda``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import nestdsl
from nestdsl.optim import fill_grad
from nestdsl.train import train
from nestdsl.train.config import make_config

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_toy import make_toy, states_equal

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["digits_width", "digits_width_depth", "digits_densenet_depth", "digits_eann"]


@pytest.fixture
def exact_float32() -> Iterator[None]:
    """No TF32 in convolutions and matrix products, so the GPU computes what the CPU does."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.detach().float().cpu(), b.detach().float().cpu(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.usefixtures("exact_float32")
def test_every_execution_path_on_the_gpu_matches_the_cpu(name: str) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / f"{name}.nest")).eval()
    x = torch.randn(8, *net.input_shape)
    expected = net(x)
    gpu = nestdsl.compile(net.ir).eval()
    gpu.load_state_dict(net.state_dict())
    gpu.cuda()
    for execution in ("dense", "blockwise", "auto"):
        gpu.set_execution(execution)
        assert all(map(close, gpu(x.cuda()), expected)), execution
    assert all(map(close, gpu.anytime(x.cuda()), expected))
    state = gpu.start(x.cuda())
    gpu.advance(state)
    state.keep(torch.tensor([0, 2, 5], device="cuda"))
    assert close(gpu.advance(state), expected[1][[0, 2, 5]])


@pytest.mark.usefixtures("exact_float32")
def test_the_weight_bank_gathers_on_the_gpu_what_the_layers_assemble() -> None:
    """On CUDA one gather assembles every layer's weights (``compiler.assembly``): a
    channels_last training step gives the outputs and gradients of per-layer assembly, and
    each gradient is laid out like its parameter."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).cuda()
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(8, *net.input_shape, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    assert net.bank.assemble("cuda")
    runs = []
    for gather in (True, False):
        net.zero_grad(set_to_none=True)
        with net.bank.gathering(gather, "cuda"):
            outputs = net(x)
            sum(out.square().mean() for out in outputs).backward()
        runs.append((outputs, [p.grad for p in net.parameters()]))
    (outputs, grads), (ref_outputs, ref_grads) = runs
    assert all(map(close, outputs, ref_outputs))
    for grad, ref, p in zip(grads, ref_grads, net.parameters(), strict=True):
        assert grad is not None and ref is not None
        assert close(grad, ref) and grad.stride() == p.stride()


@pytest.mark.usefixtures("exact_float32")
@pytest.mark.parametrize("strategy", ["sgd", "osgd", "osgd-norm"])
def test_fill_grad_captures_the_bank_gradient_on_the_gpu(strategy: str) -> None:
    """Training's step on CUDA (bf16 autocast, channels_last, the joint graph): the bank's
    gradient captured as one flat vector gives the `.grad` of a gradient per parameter."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).cuda()
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(8, *net.input_shape, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    stages = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
    assert net.bank.assemble("cuda")  # the joint pass gathers, so there is a gradient to capture
    runs = []
    for capture in (True, False):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses = [out.float().square().mean() for out in net(x)]
        fill_grad(losses, stages, strategy, capture=net.bank if capture else None)
        runs.append([None if p.grad is None else p.grad.clone() for p in net.parameters()])
    for mine, theirs, p in zip(*runs, net.parameters(), strict=True):
        assert mine is not None and theirs is not None
        assert close(mine, theirs) and mine.stride() == p.stride()


@pytest.mark.parametrize("strategy", ["sgd", "osgd"])
def test_a_stopped_gpu_run_resumes_bit_identically(tmp_path: Path, strategy: str) -> None:
    cfg = make_config(
        data="synthetic:128", batch_size=32, lr=0.05, device="cuda", epochs=2, strategy=strategy
    )
    straight = make_toy()
    result = train(straight, cfg, tmp_path / "a", progress=False)
    assert all(torch.isfinite(torch.tensor(stage.loss)) for stage in result.stages)
    train(make_toy(), cfg, tmp_path / "b", progress=False, until_epoch=1)
    resumed = make_toy()
    train(resumed, cfg, tmp_path / "b", progress=False, resume=True)
    assert states_equal(straight.state_dict(), resumed.state_dict())


def test_the_command_line_trains_and_evaluates_on_the_gpu(tmp_path: Path) -> None:
    from nestdsl.cli.app import app

    runner = CliRunner()
    out = tmp_path / "run"
    spec = str(ROOT / "specs" / "digits_width.nest")
    trained = runner.invoke(
        app, ["train", spec, "--epochs", "1", "--device", "cuda", "--out", str(out), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(
        app, ["eval", str(out), "--device", "cuda", "--repeats", "3", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert '"w4"' in evaluated.stdout


@pytest.mark.parametrize("strategy", ["sgd", "osgd"])
def test_a_compiled_gpu_run_learns_what_an_eager_one_learns(
    exact_float32: None, strategy: str
) -> None:
    """``--torch-compile`` on the GPU (inductor, Triton): osgd takes its per-task gradients
    through the compiled joint graph there, one compiled backward per stage."""
    spec = str(ROOT / "specs" / "digits_width.nest")
    options = dict(
        data="synthetic:128", batch_size=32, epochs=1, device="cuda", amp="off", strategy=strategy
    )
    eager = train(spec, make_config(**options), progress=False)
    compiled = train(spec, make_config(**options, torch_compile=True), progress=False)
    assert compiled.history[0].train_loss == pytest.approx(eager.history[0].train_loss, rel=1e-3)
    assert [s.loss for s in compiled.stages] == pytest.approx(
        [s.loss for s in eager.stages], rel=1e-3
    )


@pytest.mark.usefixtures("exact_float32")
@pytest.mark.parametrize("name", ["digits_width_depth", "digits_densenet_depth"])
def test_stages_replayed_from_cuda_graphs_give_what_eager_stages_give(name: str) -> None:
    """``GraphedAnytime``: every stage's logits equal eager anytime execution's, for inputs
    after the captured one, after a run stopped early, and after weights loaded in place;
    a stale state, another shape and moved parameters are refused."""
    from nestdsl.evaluate.graphs import GraphedAnytime

    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / f"{name}.nest")).cuda().eval()
    inputs = [torch.randn(4, *net.input_shape, device="cuda") for _ in range(3)]
    graphed = GraphedAnytime(net, inputs[0])
    with torch.no_grad():
        for x in [*inputs, inputs[0]]:
            expected = list(net.anytime(x))
            assert all(map(close, graphed.anytime(x), expected))
        stopped = graphed.start(inputs[1])
        assert close(graphed.advance(stopped), net.advance(net.start(inputs[1])))
        fresh = graphed.start(inputs[2])
        with pytest.raises(ValueError, match="newer start"):
            graphed.advance(stopped)
        assert close(graphed.advance(fresh), next(net.anytime(inputs[2])))
        other = nestdsl.compile(net.ir)
        net.load_state_dict(other.state_dict())  # in place: the graphs see the new weights
        assert all(map(close, graphed.anytime(inputs[1]), net.anytime(inputs[1])))
    with pytest.raises(ValueError, match="captured for inputs"):
        graphed.start(torch.randn(2, *net.input_shape, device="cuda"))
    net.double()
    with pytest.raises(RuntimeError, match="capture again"):
        graphed.start(inputs[0])


def test_serving_with_cuda_graphs_answers_as_eager_serving(tmp_path: Path) -> None:
    """``nestdsl run --cuda-graphs``, and ``serve`` with and without graphs under a MAC
    budget (no clock involved): the same stages and predictions."""
    import numpy as np

    from nestdsl.cli.app import app
    from nestdsl.evaluate.runtime import Budget, serve

    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width.nest")).cuda()
    x = torch.randn(5, *net.input_shape, device="cuda")
    budget = Budget(macs=10**12)
    eager, graphed = serve(net, x, budget), serve(net, x, budget, cuda_graphs=True)
    assert [r.stage for r in graphed] == [r.stage for r in eager] == [net.num_stages] * 5
    for a, b in zip(eager, graphed, strict=True):
        assert a.logits is not None and b.logits is not None
        assert torch.allclose(a.logits, b.logits, atol=1e-3, rtol=1e-3)
    out = tmp_path / "run"
    spec = str(ROOT / "specs" / "digits_width.nest")
    runner = CliRunner()
    trained = runner.invoke(
        app, ["train", spec, "--epochs", "1", "--device", "cuda", "--out", str(out), "-q"]
    )
    assert trained.exit_code == 0, trained.output
    array = tmp_path / "x.npy"
    np.save(array, np.random.default_rng(0).random((3, 8, 8), dtype=np.float32))
    served = runner.invoke(
        app,
        [
            "run",
            str(out),
            "--input",
            str(array),
            "--deadline-ms",
            "60000",
            "--device",
            "cuda",
            "--cuda-graphs",
        ],
    )
    assert served.exit_code == 0, served.output
    assert len(served.output.splitlines()) == 3
    evaluated = runner.invoke(
        app, ["eval", str(out), "--device", "cuda", "--cuda-graphs", "--repeats", "3", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert '"cuda_graphs": true' in evaluated.stdout


@pytest.mark.usefixtures("exact_float32")
def test_a_graphed_call_and_graphed_latencies_on_the_gpu() -> None:
    """``GraphedCall`` replays what the module computes (and refuses another shape);
    ``stage_latencies(..., cuda_graphs=True)`` times every stage, incremental and standalone."""
    from nestdsl.evaluate.graphs import GraphedCall
    from nestdsl.evaluate.latency import stage_latencies

    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest")).cuda().eval()
    x = torch.randn(4, *net.input_shape, device="cuda")
    sub = net.subnetwork(2).cuda().eval()
    graphed = GraphedCall(sub, x)
    for _ in range(2):
        y = torch.randn_like(x)
        assert close(graphed(y), sub(y))
    with pytest.raises(ValueError, match="capture again"):
        graphed(x[:2])
    for incremental in (True, False):
        latencies = stage_latencies(
            net, x, repeats=3, warmup=1, incremental=incremental, cuda_graphs=True
        )
        assert len(latencies) == net.num_stages
        assert all(len(t.samples_ms) == 3 and min(t.samples_ms) > 0 for t in latencies)


@pytest.mark.parametrize(
    ("strategy", "graph", "amp"),
    [("sgd", "auto", None), ("osgd", "auto", torch.bfloat16), ("osgd", "anytime", None)],
)
def test_steps_replayed_from_a_cuda_graph_train_as_eager_steps(
    exact_float32: None, strategy: str, graph: str, amp: torch.dtype | None
) -> None:
    """``GraphedSteps`` against ``train_step`` from the same start, batch for batch: eager
    warm-up steps (three of the common shape, one of another), a capture of the common shape,
    replays, an eager batch of the other shape, replays again.
    The losses and the weights (BatchNorm statistics included) agree; osgd's bank gradient
    is captured; the bf16 case runs on channels_last as the trainer does."""
    from functools import partial

    from nestdsl.train.batch_step import StepPlan, mode_of, train_step
    from nestdsl.train.devices import Runtime
    from nestdsl.train.graphed import GraphedSteps

    runtime = Runtime(torch.device("cuda"), amp, channels_last=amp is not None)
    torch.manual_seed(0)
    sizes = [16, 8, 16, 16, 16, 16, 8, 16, 16]
    batches = [(torch.randn(b, 1, 16, 16), torch.randint(0, 10, (b,))) for b in sizes]
    runs = []
    for graphed in (False, True):
        torch.manual_seed(1)
        net = nestdsl.compile(nestdsl.load(ROOT / "specs" / "digits_width_depth.nest"))
        net = net.cuda().train()
        if runtime.channels_last:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        stages = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]
        optimizer = torch.optim.SGD(list(dict.fromkeys(net.parameters())), lr=0.05, momentum=0.9)
        mode = mode_of(make_config(strategy=strategy, task_graph=graph), "cuda")
        plan = StepPlan(mode, net, strategy, stages, optimizer, capture=net.bank)
        step = GraphedSteps(plan, runtime) if graphed else partial(train_step, plan, runtime)
        losses = [step(runtime.to_device(x), y.cuda()) for x, y in batches]
        runs.append((losses, {k: v.clone() for k, v in net.state_dict().items()}))
        if isinstance(step, GraphedSteps):
            assert (step.captures, step.eager_steps, step.replays) == (1, 5, 4)
    tolerance = {"atol": 1e-4, "rtol": 1e-3} if amp is None else {"atol": 2e-2, "rtol": 2e-2}
    (eager_losses, eager_state), (graphed_losses, graphed_state) = runs
    for mine, theirs in zip(graphed_losses, eager_losses, strict=True):
        torch.testing.assert_close(torch.stack(mine), torch.stack(theirs), **tolerance)
    for key, value in eager_state.items():
        torch.testing.assert_close(graphed_state[key].float(), value.float(), **tolerance)


def test_a_run_with_cuda_graphs_learns_what_an_eager_run_learns(
    exact_float32: None, tmp_path: Path
) -> None:
    """``--cuda-graphs`` end to end: the banner says so, and an epoch's losses equal eager
    training's (150 examples in batches of 32 end each epoch on a batch of 22, run eagerly)."""
    from nestdsl.cli.app import app

    spec = str(ROOT / "specs" / "digits_width.nest")
    options = dict(data="synthetic:150", batch_size=32, epochs=2, device="cuda", amp="off")
    eager = train(spec, make_config(**options), progress=False)
    graphed = train(spec, make_config(**options, cuda_graphs=True), progress=False)
    for mine, theirs in zip(graphed.history, eager.history, strict=True):
        assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-3)
    result = CliRunner().invoke(
        app,
        [
            "train",
            spec,
            "--epochs",
            "1",
            "--device",
            "cuda",
            "--cuda-graphs",
            "--data",
            "synthetic:128",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "graphs    forward and backward passes replayed from a CUDA graph" in result.output
