"""ONNX files of compiled networks, each checked against PyTorch with onnxruntime.

ONNX is what most runtimes outside Python read. An export here is finished only once
onnxruntime has run the written file on a batch of another size than the one traced (the
batch dimension is dynamic) and its outputs matched PyTorch's (E922 otherwise), so a user
never ships a graph that computes something else. The exporter is PyTorch's default
(``torch.export``-based, which needs ``onnxscript``); the three packages are the optional
extra ``nestdsl[deploy]`` and their absence is a diagnostic (E920), never an ImportError.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from nestdsl.diagnostics import fail
from nestdsl.files import cannot_write

if TYPE_CHECKING:
    from nestdsl.compiler import NestedNet
    from nestdsl.ir import NestIR

PACKAGES = ("onnx", "onnxruntime", "onnxscript")
TRACE_BATCH = 2
"""The batch size exports are traced with (not 1: PyTorch would specialise the dimension)."""
CHECK_BATCH = 3
"""The batch size exports are checked with: another size proves the batch is dynamic."""
TOLERANCE = 1e-4
"""Largest accepted difference from PyTorch, relative to the outputs' largest magnitude."""


def require_onnx() -> None:
    """Fail with E920, naming the extra to install, when an ONNX package is missing."""
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        fail(
            "E920",
            f"ONNX export needs {', '.join(missing)}, not installed here",
            help="install the deployment extra: pip install 'nestdsl[deploy]'",
        )


@dataclass(frozen=True)
class Check:
    """How an exported file compared with PyTorch: on a batch of ``batch`` random inputs,
    the largest absolute difference of any output value was ``max_abs_diff``."""

    batch: int
    max_abs_diff: float


def trained_net(ir: NestIR, weights: Path | None) -> NestedNet:
    """The compiled network in eval mode, with ``weights`` (a run directory or a state-dict
    file) loaded when given; without them it holds freshly initialised parameters."""
    from nestdsl.compiler import compile as compile_net
    from nestdsl.trained import load_weights

    net = compile_net(ir).eval()
    if weights is not None:
        load_weights(net, weights)
    return net


def random_input(net: NestedNet, batch: int) -> Tensor:
    """A seeded batch of inputs ([batch, C, H, W]): checks are reproducible."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, *net.input_shape, generator=generator)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines and warnings: the command prints its own notice."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_module(
    module: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    varargs: bool = False,
) -> None:
    """Write ``module`` (eval mode) as one self-contained ONNX file whose inputs all share a
    dynamic batch dimension (E921 when PyTorch cannot export it, E905 when it cannot be
    written). ``varargs``: ``module.forward`` takes ``*tensors`` (one argument to export)."""
    require_onnx()
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in example)
    with _quiet():
        try:
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=(shapes,) if varargs else shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except OSError as error:
            cannot_write(path, error.strerror or str(error))
        except Exception as error:  # the exporter raises many types; all are a failed export
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            fail(
                "E921",
                f"PyTorch could not export `{path}` to ONNX: {first}",
                help="export a torch.export program instead (--emit export) and report this",
            )


class Session(Protocol):
    """What is used of an ``onnxruntime.InferenceSession``."""

    def run(
        self, output_names: list[str] | None, feeds: dict[str, np.ndarray]
    ) -> list[np.ndarray]: ...


def session(path: Path) -> Session:
    """An onnxruntime session on the CPU for the ONNX file ``path``."""
    require_onnx()
    import onnxruntime

    loaded: Session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return loaded


def compare(path: Path, expected: Sequence[Tensor], got: Sequence[np.ndarray], batch: int) -> Check:
    """Check onnxruntime's outputs against PyTorch's; E922 when any differs too much."""
    worst, scale = 0.0, 0.0
    for want, have in zip(expected, got, strict=True):
        reference = want.detach().float()
        worst = max(worst, float((torch.from_numpy(have) - reference).abs().max()))
        scale = max(scale, float(reference.abs().max()))
    if worst > TOLERANCE * max(scale, 1.0):
        fail(
            "E922",
            f"`{path}` run by onnxruntime differs from PyTorch by up to {worst:.3g}",
            help="the exported file is wrong; export with --emit export instead and report this",
        )
    return Check(batch, worst)


def export_onnx(ir: NestIR, stage: int, path: Path, weights: Path | None = None) -> Check:
    """Write D_stage (the standalone network of stage ``stage``) as an ONNX file, input
    ``input`` ([B, C, H, W]) and output ``logits`` ([B, classes]), and check it."""
    net = trained_net(ir, weights)
    sub = net.subnetwork(stage).eval()
    example = random_input(net, TRACE_BATCH)
    export_module(sub, (example,), path, ["input"], ["logits"])
    x = random_input(net, CHECK_BATCH)
    with torch.no_grad():
        expected = sub(x)  # [B, classes]
    got = session(path).run(None, {"input": x.numpy()})
    return compare(path, [expected], got, CHECK_BATCH)
