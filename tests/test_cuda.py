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
