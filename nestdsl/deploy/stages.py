"""The anytime network as a chain of incremental stage programs, for runtimes outside Python.

Program k takes the input and the unit tensors of earlier stages that stage k reads, and
returns stage k's logits plus the unit tensors it computes that later stages read. A runtime
keeps the tensors by name, feeds each program what its manifest entry lists, and may stop
after any stage: nothing is computed twice, and stage k costs its incremental MACs.

Tensors are named after their unit: ``input`` for the input, ``LAYER#J`` for stripe J of
layer LAYER (``s1.2.conv1#0``); every program's first output is ``logits``. The directory
holds ``stageK.onnx`` per stage and ``manifest.json``::

    {"network": ..., "input_shape": [...], "num_classes": ..., "stages": [
      {"stage": 1, "label": "w1", "file": "stage1.onnx", "inputs": ["input"],
       "outputs": ["logits", "stem#0", ...], "macs": ..., "incremental_macs": ...}, ...]}

Each program wraps the compiler's public stepwise API (``AnytimeState`` holding only what the
stage reads, then ``NestedNet.advance``), so a program computes exactly what ``advance`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from nestdsl.compiler.network import AnytimeState
from nestdsl.deploy.onnx import (
    CHECK_BATCH,
    TRACE_BATCH,
    Check,
    compare,
    export_module,
    random_input,
    require_onnx,
    session,
    trained_net,
)
from nestdsl.diagnostics import fail
from nestdsl.files import cannot_write, unwritable
from nestdsl.ir.model import UnitId

if TYPE_CHECKING:
    from nestdsl.compiler import NestedNet
    from nestdsl.ir import NestIR

INPUT: UnitId = ("input", 0)
LOGITS = "logits"
MANIFEST = "manifest.json"


def tensor_name(unit: UnitId) -> str:
    """The name a unit's tensor has in the programs and the manifest."""
    return "input" if unit == INPUT else f"{unit[0]}#{unit[1]}"


class StageProgram(nn.Module):
    """Stage ``stage`` as a function of explicit tensors: ``reads`` in, logits and
    ``keeps`` out (the units of this stage that later stages read)."""

    def __init__(
        self, net: NestedNet, stage: int, reads: tuple[UnitId, ...], keeps: tuple[UnitId, ...]
    ) -> None:
        super().__init__()
        self.net = net
        self.stage = stage
        self.reads = reads
        self.keeps = keeps

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """``tensors`` in the order of ``reads``; returns logits ([B, classes]) and then the
        kept unit tensors ([B, stripe channels, H, W]) in the order of ``keeps``."""
        cache = dict(zip(self.reads, tensors, strict=True))
        state = AnytimeState(cache=cache, pooled={}, stage=self.stage - 1)
        logits = self.net.advance(state)
        return (logits, *(state.cache[unit] for unit in self.keeps))


def stage_programs(net: NestedNet) -> list[StageProgram]:
    """One program per stage, each keeping only the units some later stage reads."""
    stages = range(1, net.num_stages + 1)
    reads = {k: net.stage_reads(k) for k in stages}
    programs = []
    for k in stages:
        later = {unit for j in stages if j > k for unit in reads[j]}
        keeps = tuple(unit for unit in net.stage_writes(k) if unit in later)
        programs.append(StageProgram(net, k, reads[k], keeps))
    return programs


@dataclass(frozen=True)
class StageEntry:
    """One program of the chain: its file, the tensors it takes and returns (by name), and
    its cost: ``incremental_macs`` when stages 1..k-1 have run, ``macs`` of D_k alone."""

    stage: int
    label: str
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int
    incremental_macs: int


@dataclass(frozen=True)
class Manifest:
    """What a runtime needs to run the chain: the input it takes and the programs in order."""

    network: str
    input_shape: tuple[int, ...]
    num_classes: int
    stages: tuple[StageEntry, ...]

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def manifest(net: NestedNet, programs: list[StageProgram]) -> Manifest:
    """The manifest of ``programs``, with costs from the cost model."""
    from nestdsl.cost import stage_costs

    costs = stage_costs(net.ir)
    return Manifest(
        network=net.ir.name,
        input_shape=tuple(net.input_shape),
        num_classes=net.num_classes,
        stages=tuple(
            StageEntry(
                stage=p.stage,
                label=net.stage_labels[p.stage - 1],
                file=f"stage{p.stage}.onnx",
                inputs=tuple(tensor_name(u) for u in p.reads),
                outputs=(LOGITS, *(tensor_name(u) for u in p.keeps)),
                macs=costs[p.stage - 1].flops,
                incremental_macs=costs[p.stage - 1].incremental_flops,
            )
            for p in programs
        ),
    )


def _prepare(directory: Path) -> None:
    """Create the output folder (E905 when it is a file or nothing can be written there)."""
    if directory.exists() and not directory.is_dir():
        cannot_write(directory, "it is a file, not a folder", help="give a folder, e.g. -o d/")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        cannot_write(directory, error.strerror or str(error))
    reason = unwritable(directory)
    if reason is not None:
        cannot_write(directory, reason)


def export_stages(ir: NestIR, directory: Path, weights: Path | None = None) -> Check:
    """Write the chain of stage programs and its manifest into ``directory``, then check
    that onnxruntime running the chain gives ``net.anytime``'s outputs (E922 otherwise)."""
    require_onnx()
    _prepare(directory)
    net = trained_net(ir, weights)
    programs = stage_programs(net)
    chain = manifest(net, programs)
    tensors = {"input": random_input(net, TRACE_BATCH)}
    for program, entry in zip(programs, chain.stages, strict=True):
        inputs = tuple(tensors[name] for name in entry.inputs)
        file = directory / entry.file
        export_module(program, inputs, file, entry.inputs, entry.outputs, varargs=True)
        with torch.no_grad():
            tensors.update(zip(entry.outputs, program(*inputs), strict=True))
    try:
        (directory / MANIFEST).write_text(chain.as_json(), encoding="utf-8")
    except OSError as error:
        cannot_write(directory / MANIFEST, error.strerror or str(error))
    x = random_input(net, CHECK_BATCH)
    with torch.no_grad():
        expected = list(net.anytime(x))  # [B, classes] per stage
    return compare(directory, expected, list(run_stages(directory, x.numpy())), CHECK_BATCH)


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a stage directory (E923 when it is missing or malformed)."""
    path = directory / MANIFEST
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        stages = tuple(
            StageEntry(**{**s, "inputs": tuple(s["inputs"]), "outputs": tuple(s["outputs"])})
            for s in data["stages"]
        )
        return Manifest(
            network=str(data["network"]),
            input_shape=tuple(int(d) for d in data["input_shape"]),
            num_classes=int(data["num_classes"]),
            stages=stages,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(
            "E923",
            f"`{directory}` holds no readable stage manifest: {error}",
            help="give a folder written by nestdsl compile SPEC --emit onnx-stages -o DIR",
        )


def run_stages(directory: Path, x: np.ndarray) -> Iterator[np.ndarray]:
    """Run the chain in ``directory`` with onnxruntime on ``x`` ([B, C, H, W], float32),
    yielding each stage's logits ([B, classes]) in order: stop iterating to stop computing.

    This is what a runtime outside Python does: keep every returned tensor by name and feed
    each program the ones its manifest entry lists.
    """
    chain = read_manifest(directory)
    tensors: dict[str, np.ndarray] = {"input": np.ascontiguousarray(x, dtype=np.float32)}
    for entry in chain.stages:
        program = session(directory / entry.file)
        outputs = program.run(list(entry.outputs), {n: tensors[n] for n in entry.inputs})
        tensors.update(zip(entry.outputs, outputs, strict=True))
        yield tensors.pop(LOGITS)
