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
from nestdsl.diagnostics import NestError, Span
from nestdsl.ir.build import build_ir
from nestdsl.ir.limits import Limits
from nestdsl.parse import parse
from nestdsl.parse.bounds import MAX_SOURCE_CHARS

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
        _check_file_size(Path(path), display)
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no text
    except (OSError, UnicodeDecodeError) as error:
        reason = _reason(error)
        diagnostics.fail(
            code="E006",
            message=f"cannot read spec file `{display}`: {reason}",
            help="check the path; spec files are UTF-8 text ending in `.nest`",
        )
    return loads(text, display, limits)


def _check_file_size(path: Path, display: str) -> None:
    """Refuse a file too big to be a spec before reading it (a huge file would fill memory)."""
    if path.is_file() and path.stat().st_size > 4 * MAX_SOURCE_CHARS:  # UTF-8: <= 4 bytes/char
        diagnostics.fail(
            "E007",
            f"the spec file `{display}` is {path.stat().st_size:,} bytes long, more than a "
            f"spec of {MAX_SOURCE_CHARS:,} characters can be",
            Span(file=display, line=1, column=1, end_line=1, end_column=2),
            "a spec is a short text file; check that this is the file you meant",
        )


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
