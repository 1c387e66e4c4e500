"""nestdsl: a declarative language and compiler for anytime (nested) neural networks.

The pipeline, one module each: ``parse`` (text to AST) → ``checks`` → ``ir`` (graph of
nested units) → ``compiler`` (PyTorch module) → ``optim`` / ``train`` / ``evaluate`` /
``draw``. The names below are the public Python API.
"""

from nestdsl.ast import Spec
from nestdsl.compiler import NestedNet, Standalone, compile
from nestdsl.cost import StageCost, stage_costs
from nestdsl.diagnostics import Diagnostic, NestError, Span
from nestdsl.ir import NestIR, build_ir, dump_ir
from nestdsl.load import load, loads

__all__ = [
    "Diagnostic",
    "NestError",
    "NestIR",
    "NestedNet",
    "Span",
    "Spec",
    "StageCost",
    "Standalone",
    "build_ir",
    "compile",
    "dump_ir",
    "load",
    "loads",
    "stage_costs",
]
__version__ = "0.1.0"
