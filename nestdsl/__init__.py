"""nestdsl: a declarative language and compiler for anytime (nested) neural networks."""

from nestdsl.diagnostics import Diagnostic, NestError, Span

__all__ = ["Diagnostic", "NestError", "Span"]
__version__ = "0.1.0"
