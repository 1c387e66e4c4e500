"""nestdsl: a declarative language and compiler for anytime (nested) neural networks.

The pipeline, one module each: ``parse`` (text to AST) → ``checks`` → ``ir`` (graph of
nested units) → ``compiler`` (PyTorch module) → ``optim`` / ``train`` / ``evaluate`` /
``draw``. The names below are the public Python API. The compiler (and so PyTorch) is
imported on first use, so that checking or drawing a spec starts quickly.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from nestdsl.ast import Spec
from nestdsl.cost import StageCost, stage_costs
from nestdsl.diagnostics import Diagnostic, NestError, Span
from nestdsl.ir import NestIR, build_ir, dump_ir
from nestdsl.load import load, loads

if TYPE_CHECKING:
    from nestdsl.compiler import NestedNet, Standalone, compile

_LAZY = {
    "compile": "nestdsl.compiler",
    "NestedNet": "nestdsl.compiler",
    "Standalone": "nestdsl.compiler",
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
    "build_ir",
    "compile",
    "dump_ir",
    "load",
    "loads",
    "stage_costs",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nestdsl' has no attribute {name!r}")
