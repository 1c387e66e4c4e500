"""Incremental stage programs: the chain, in PyTorch and in onnxruntime, equals `net.anytime`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_specs import KINDS, spec_text

from nestdsl.compiler import NestedNet
from nestdsl.compiler import compile as compile_net
from nestdsl.cost import stage_costs
from nestdsl.deploy import export_stages, read_manifest, run_stages, stage_programs, tensor_name
from nestdsl.deploy.onnx import TOLERANCE, random_input
from nestdsl.diagnostics import NestError
from nestdsl.ir import build_ir
from nestdsl.load import load, loads

DIGITS = ["digits_width", "digits_depth", "digits_width_depth", "digits_densenet_depth"]
DIGITS += ["digits_se_width", "digits_mobilenet_width"]


def trained_like(net: NestedNet) -> NestedNet:
    """Weights and BatchNorm statistics no fresh network has, in eval mode."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.rand(tensor.shape, generator=generator))
    return net.eval()


def chain_in_pytorch(net: NestedNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Run the programs as a runtime would: only named tensors pass between them."""
    programs = stage_programs(net)
    tensors = {"input": x}
    logits = []
    for program in programs:
        outputs = program(*(tensors[tensor_name(u)] for u in program.reads))
        logits.append(outputs[0])
        tensors.update({tensor_name(u): t for u, t in zip(program.keeps, outputs[1:], strict=True)})
    return logits


@pytest.mark.parametrize("name", DIGITS)
def test_programs_chained_in_pytorch_equal_anytime(name: str, specs_dir: Path) -> None:
    net = trained_like(compile_net(build_ir(load(specs_dir / f"{name}.nest"))))
    x = torch.randn(3, *net.input_shape)
    with torch.no_grad():
        expected = list(net.anytime(x))
        got = chain_in_pytorch(net, x)
    assert len(got) == net.num_stages
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", DIGITS)
def test_stage_reads_and_writes_partition_the_work(name: str, specs_dir: Path) -> None:
    net = compile_net(build_ir(load(specs_dir / f"{name}.nest")))
    written: set[tuple[str, int]] = {("input", 0)}
    for k in range(1, net.num_stages + 1):
        writes = set(net.stage_writes(k))
        assert not writes & written, "a unit computed twice"
        assert set(net.stage_reads(k)) <= written, "a read of a unit not computed yet"
        assert (net.ir.heads[k - 1], 0) in writes
        written |= writes
    assert written == {("input", 0)} | {
        unit for layer in net.ir.layers.values() for unit in layer.units() if layer.op != "input"
    }


@pytest.fixture(scope="module", params=sorted(KINDS))
def exported(request: pytest.FixtureRequest, tmp_path_factory) -> tuple[NestedNet, Path]:
    """A chain exported with trained-like weights, once per nesting kind."""
    ir = build_ir(loads(spec_text(request.param)))
    torch.manual_seed(0)  # the same weights whatever ran before
    net = trained_like(compile_net(ir))
    folder = tmp_path_factory.mktemp(request.param)
    torch.save(net.state_dict(), folder / "weights.pt")
    check = export_stages(ir, folder / "stages", weights=folder / "weights.pt")
    with torch.no_grad():  # the export's own tolerance: relative to the largest logit
        scale = max(float(out.abs().max()) for out in net.anytime(random_input(net, 3)))
    assert check.batch == 3 and check.max_abs_diff <= TOLERANCE * max(scale, 1.0)
    return net, folder / "stages"


def test_onnxruntime_chain_equals_anytime(exported: tuple[NestedNet, Path]) -> None:
    net, folder = exported
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 5):  # neither is the batch the programs were traced with
        x = torch.randn(batch, *net.input_shape, generator=generator)
        with torch.no_grad():
            expected = list(net.anytime(x))
        got = list(run_stages(folder, x.numpy()))
        assert len(got) == net.num_stages
        for a, b in zip(got, expected, strict=True):
            assert a.shape == (batch, net.num_classes)
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)


def test_manifest_lists_what_each_program_exchanges(exported: tuple[NestedNet, Path]) -> None:
    net, folder = exported
    chain = read_manifest(folder)
    assert json.loads((folder / "manifest.json").read_text())["network"] == net.ir.name
    assert chain.input_shape == tuple(net.input_shape) and chain.num_classes == 10
    costs = stage_costs(net.ir)
    available = {"input"}
    for k, entry in enumerate(chain.stages, start=1):
        assert (folder / entry.file).is_file() and entry.stage == k
        assert entry.label == net.stage_labels[k - 1]
        assert set(entry.inputs) <= available, "a program reads what no earlier one returned"
        assert entry.outputs[0] == "logits"
        assert (entry.macs, entry.incremental_macs) == (
            costs[k - 1].flops,
            costs[k - 1].incremental_flops,
        )
        available |= set(entry.outputs[1:])
    read = {name for entry in chain.stages for name in entry.inputs}
    assert available - {"input"} <= read, "a program returns what no later one reads"


def test_stopping_after_a_stage_runs_no_later_program(exported: tuple[NestedNet, Path]) -> None:
    net, folder = exported
    stages = run_stages(folder, np.zeros((2, *net.input_shape), dtype=np.float32))
    next(stages)
    (folder / "stage2.onnx").rename(folder / "held.onnx")  # the next program is not read yet
    try:
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
            next(stages)
    finally:
        (folder / "held.onnx").rename(folder / "stage2.onnx")


def test_unreadable_manifest_is_E923(tmp_path: Path) -> None:
    with pytest.raises(NestError, match="E923"):
        list(run_stages(tmp_path, np.zeros((1, 1, 8, 8), dtype=np.float32)))
    (tmp_path / "manifest.json").write_text('{"network": "x"}')
    with pytest.raises(NestError, match="E923"):
        read_manifest(tmp_path)


def test_a_file_as_the_output_folder_is_E905(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(NestError, match="E905"):
        export_stages(build_ir(loads(spec_text("width"))), tmp_path / "taken")
