"""nestdsl: a declarative language and compiler for anytime (nested) neural networks.

The pipeline, one module each: ``parse`` (text to AST) → ``checks`` → ``ir`` (graph of
nested units) → ``compiler`` (PyTorch module) → ``optim`` / ``train`` / ``evaluate`` /
``draw``. The names below are the public Python API. Each is imported on first use, so that
``nestdsl --help`` starts at once and checking or drawing a spec never imports PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nestdsl.lazy import lazy_names

if TYPE_CHECKING:
    from nestdsl.ast import Spec
    from nestdsl.compiler import NestedNet, Standalone, compile
    from nestdsl.cost import StageCost, stage_costs
    from nestdsl.diagnostics import Diagnostic, NestError, Span
    from nestdsl.ir import NestIR, build_ir, dump_ir
    from nestdsl.load import load, loads
    from nestdsl.trained import TrainedRun, load_run

_LAZY = {
    "Spec": "nestdsl.ast",
    "StageCost": "nestdsl.cost",
    "stage_costs": "nestdsl.cost",
    "load": "nestdsl.load",
    "Diagnostic": "nestdsl.diagnostics",
    "NestError": "nestdsl.diagnostics",
    "Span": "nestdsl.diagnostics",
    "NestIR": "nestdsl.ir",
    "build_ir": "nestdsl.ir",
    "dump_ir": "nestdsl.ir",
    "loads": "nestdsl.load",
    "compile": "nestdsl.compiler",
    "NestedNet": "nestdsl.compiler",
    "Standalone": "nestdsl.compiler",
    "TrainedRun": "nestdsl.trained",
    "load_run": "nestdsl.trained",
}

__all__ = [
    "Diagnostic",
    "NestError",
    "NestIR",
    "NestedNet",
    "Span",
    "Spec",
    "StageCost",
    "Standalone",
    "TrainedRun",
    "build_ir",
    "compile",
    "dump_ir",
    "load",
    "load_run",
    "loads",
    "stage_costs",
]
__version__ = "0.1.0"


lazy_names(__name__, _LAZY)
