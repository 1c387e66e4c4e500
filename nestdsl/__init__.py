"""nestdsl: a declarative language and compiler for anytime (nested) neural networks.

The pipeline, one module each: ``parse`` (text to AST) → ``checks`` → ``ir`` (graph of
nested units) → ``compiler`` (PyTorch module) → ``optim`` / ``train`` / ``evaluate`` /
``draw``. The names below are the public Python API. Each is imported on first use, so that
``nestdsl --help`` starts at once and checking or drawing a spec never imports PyTorch.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nestdsl' has no attribute {name!r}")


class _Package(ModuleType):
    """The package's module type: ``nestdsl.load`` stays the function.

    Importing the submodule ``nestdsl.load`` binds the module to the package attribute of the
    same name; this property (a data descriptor, so it wins over that binding) keeps the public
    name pointing at the function however the import order went.
    """

    @property
    def load(self) -> Any:
        from nestdsl.load import load

        return load

    @load.setter
    def load(self, value: object) -> None:
        """Ignore the import system binding the submodule here (see the class docstring)."""


sys.modules[__name__].__class__ = _Package
