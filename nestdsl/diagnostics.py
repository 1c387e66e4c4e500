"""One diagnostics type, carried from the parser to the compiler.

Every error a user can cause becomes a :class:`Diagnostic` with a source :class:`Span`, so
that the parser, the checks, the IR builder and the CLI all report faults the same way:
``error[E012]: ...``, ``--> file:line:col``, the source line and a caret run under the fault.
Collecting diagnostics (rather than raising at the first one) lets a user fix several errors
per run; :class:`NestError` carries them all out of the pipeline.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict

MAX_REPORTED = 20
"""Long lists of errors are cut here ("... and 12 more")."""


class Span(BaseModel):
    """A region of a source file; lines and columns are 1-based, ``end_column`` exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Diagnostic(BaseModel):
    """A message about the user's input, pointing at where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    message: str
    span: Span | None = None
    severity: Literal["error", "warning"] = "error"
    help: str | None = None
    notes: tuple[str, ...] = ()


class NestError(Exception):
    """Raised by the public API when the input has errors; holds every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = list(diagnostics)
        self.sources = dict(sources or {})
        super().__init__(self.render())

    def render(self) -> str:
        return render_all(self.diagnostics, self.sources)


def error(
    code: str,
    message: str,
    span: Span | None = None,
    help: str | None = None,
    notes: Sequence[str] = (),
) -> Diagnostic:
    """The one way to make an error diagnostic (parser, checks, IR, data, training, CLI)."""
    return Diagnostic(code=code, message=message, span=span, help=help, notes=tuple(notes))


def fail(
    code: str,
    message: str,
    span: Span | None = None,
    help: str | None = None,
    notes: Sequence[str] = (),
) -> NoReturn:
    """Raise a single error at once, for code that cannot go on (loading data, a run)."""
    raise NestError([error(code, message, span, help, notes)])


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The close match to suggest for a misspelt name, if any."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


def render(diagnostic: Diagnostic, sources: dict[str, str]) -> str:
    """Render one diagnostic like rustc: header, location, source line, caret run, help."""
    lines = [f"{diagnostic.severity}[{diagnostic.code}]: {diagnostic.message}"]
    span = diagnostic.span
    if span is not None:
        lines.append(f"  --> {span}")
        source_lines = sources.get(span.file, "").splitlines()
        if 1 <= span.line <= len(source_lines):
            text = source_lines[span.line - 1].expandtabs(1)
            gutter = " " * len(str(span.line))
            end = span.end_column if span.end_line == span.line else len(text) + 1
            width = max(1, min(end, len(text) + 1) - span.column)
            lines.append(f"{gutter} |")
            lines.append(f"{span.line} | {text}")
            lines.append(f"{gutter} | {' ' * (span.column - 1)}{'^' * width}")
    for note in diagnostic.notes:
        lines.append(f"  = note: {note}")
    if diagnostic.help:
        lines.append(f"  = help: {diagnostic.help}")
    return "\n".join(lines)


def render_all(diagnostics: Sequence[Diagnostic], sources: dict[str, str]) -> str:
    """Render diagnostics in source order, capping long lists."""
    ordered = sorted(diagnostics, key=_position)
    shown = [render(d, sources) for d in ordered[:MAX_REPORTED]]
    rest = len(ordered) - MAX_REPORTED
    if rest > 0:
        shown.append(f"... and {rest} more")
    errors = sum(d.severity == "error" for d in ordered)
    if errors:
        shown.append(f"{errors} error{'s' if errors != 1 else ''} found")
    return "\n\n".join(shown)


def _position(diagnostic: Diagnostic) -> tuple[str, int, int]:
    span = diagnostic.span
    return ("", 0, 0) if span is None else (span.file, span.line, span.column)
