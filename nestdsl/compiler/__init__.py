"""Compile the IR (or a spec) into a PyTorch module with one output per stage."""

from __future__ import annotations

from nestdsl.ast import Spec
from nestdsl.compiler.network import AnytimeState, NestedNet, Standalone
from nestdsl.ir import NestIR, build_ir

__all__ = ["AnytimeState", "NestedNet", "Standalone", "compile"]


def compile(spec: Spec | NestIR) -> NestedNet:
    """Build the nested ``nn.Module`` of a checked spec (or of an already-built IR)."""
    ir = spec if isinstance(spec, NestIR) else build_ir(spec)
    return NestedNet(ir)
