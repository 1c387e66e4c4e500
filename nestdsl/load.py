"""The front end's public entry points: text or file -> parsed and checked :class:`Spec`.

Parsing (:mod:`nestdsl.parse`) and whole-spec checks (:mod:`nestdsl.checks`) are separate
passes; this module runs both, then lowers the spec once (unit bodies are evaluated per
instance, and resource limits are counted while lowering), and turns any error into one
:class:`NestError`, so callers (the compiler, the CLI) only ever see a checked spec or a
renderable error.
"""

from __future__ import annotations

from pathlib import Path

from nestdsl import diagnostics
from nestdsl.ast import Spec
from nestdsl.checks import check
from nestdsl.diagnostics import NestError
from nestdsl.ir.build import build_ir
from nestdsl.ir.limits import Limits
from nestdsl.parse import parse

__all__ = ["load", "loads"]


def loads(text: str, path: str = "<string>", limits: Limits | None = None) -> Spec:
    """Parse and check `.nest` source; raise :class:`NestError` with every error found."""
    spec = parse(text, path)
    found = check(spec)
    if any(d.severity == "error" for d in found):
        raise NestError(found, {path: text})
    build_ir(spec, limits)  # errors in unit bodies, crossed resource limits
    return spec


def load(path: str | Path, limits: Limits | None = None) -> Spec:
    """Read, parse and check a `.nest` file (an unreadable file is a :class:`NestError` too)."""
    display = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no text
    except (OSError, UnicodeDecodeError) as error:
        reason = _reason(error)
        diagnostics.fail(
            code="E006",
            message=f"cannot read spec file `{display}`: {reason}",
            help="check the path; spec files are UTF-8 text ending in `.nest`",
        )
    return loads(text, display, limits)


def _reason(error: OSError | UnicodeDecodeError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error)).lower()
