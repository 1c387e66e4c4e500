"""Deployment artifacts: ONNX files of D_k and the anytime network as incremental stage programs.

>>> export_onnx(ir, 2, Path("d2.onnx"), weights=Path("runs/dw"))  # doctest: +SKIP
>>> export_stages(ir, Path("stages/"), weights=Path("runs/dw"))  # doctest: +SKIP
>>> for logits in run_stages(Path("stages/"), x):  # doctest: +SKIP
...     ...  # stop whenever the answer is good enough or time is up

Every export is checked with onnxruntime against PyTorch before it returns (see ``onnx.py``).
Needs the optional extra ``nestdsl[deploy]`` (onnx, onnxruntime, onnxscript).
"""

from nestdsl.deploy.onnx import Check, export_onnx, require_onnx
from nestdsl.deploy.stages import (
    Manifest,
    StageEntry,
    StageProgram,
    export_stages,
    read_manifest,
    run_stages,
    stage_programs,
    tensor_name,
)

__all__ = [
    "Check",
    "Manifest",
    "StageEntry",
    "StageProgram",
    "export_onnx",
    "export_stages",
    "read_manifest",
    "require_onnx",
    "run_stages",
    "stage_programs",
    "tensor_name",
]
