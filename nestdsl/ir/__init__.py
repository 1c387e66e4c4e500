"""The graph IR of nested networks: build it from a spec, inspect it, dump it."""

from nestdsl.ir.build import build_ir
from nestdsl.ir.dump import dump_ir
from nestdsl.ir.limits import Limits
from nestdsl.ir.model import Layer, NestIR, UnitId

__all__ = ["Layer", "Limits", "NestIR", "UnitId", "build_ir", "dump_ir"]
