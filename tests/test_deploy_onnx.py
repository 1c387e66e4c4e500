"""ONNX export of D_k, checked with onnxruntime; the errors of the deployment path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_specs import spec_text

from nestdsl.compiler import compile as compile_net
from nestdsl.deploy import export_onnx, onnx, require_onnx
from nestdsl.diagnostics import NestError
from nestdsl.ir import build_ir
from nestdsl.load import loads


def test_exported_stage_matches_pytorch_in_onnxruntime(tmp_path: Path) -> None:
    ir = build_ir(loads(spec_text("depth")))
    torch.manual_seed(0)  # the same weights whatever ran before
    net = compile_net(ir).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)  # weights a fresh network cannot have by chance
    torch.save(net.state_dict(), tmp_path / "final.pt")
    check = export_onnx(ir, 2, tmp_path / "d2.onnx", weights=tmp_path / "final.pt")
    assert check.batch == 3 and check.max_abs_diff < 1e-4

    session = onnx.session(tmp_path / "d2.onnx")
    sub = net.subnetwork(2).eval()
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 4):
        x = torch.randn(batch, *net.input_shape, generator=generator)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, sub(x).numpy(), rtol=1e-4, atol=1e-5)


def test_missing_packages_name_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec

    def without_onnxruntime(name: str, *args: object):
        return None if name == "onnxruntime" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_onnxruntime)
    with pytest.raises(NestError, match="E920") as caught:
        require_onnx()
    text = caught.value.render()
    assert "onnxruntime" in text and "pip install 'nestdsl[deploy]'" in text


def test_outputs_that_differ_are_E922(tmp_path: Path) -> None:
    expected = [torch.ones(2, 3)]
    assert onnx.compare(tmp_path, expected, [np.ones((2, 3), np.float32)], 2).max_abs_diff == 0
    with pytest.raises(NestError, match=r"E922[\s\S]*differs from PyTorch by up to 0.5"):
        onnx.compare(tmp_path, expected, [np.full((2, 3), 1.5, np.float32)], 2)


def test_an_export_failure_is_E921(tmp_path: Path, monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(NestError, match=r"E921[\s\S]*unsupported operator"):
        export_onnx(build_ir(loads(spec_text("width"))), 1, tmp_path / "d1.onnx")
