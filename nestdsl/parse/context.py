"""What the parser knows while it walks the statements: the parameters defined so far and the
diagnostics collected so far.

Errors are collected, never raised one by one; a failed evaluation raises :class:`Failed`
only to abandon the value it was computing, after its diagnostic has been recorded here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from nestdsl.ast import BLOCK_KINDS, UnitDef
from nestdsl.diagnostics import Diagnostic, Span, did_you_mean, error
from nestdsl.expr import Value
from nestdsl.parse.wording import choices


class Failed(Exception):
    """An evaluation failed; the diagnostic (if any) has already been recorded."""


@dataclass
class Context:
    """The parse of one file: its source lines, its parameters and the diagnostics so far."""

    path: str
    lines: list[str]
    params: dict[str, Value] = field(default_factory=dict)
    param_spans: dict[str, Span] = field(default_factory=dict)
    failed_params: set[str] = field(default_factory=set)
    """Parameters whose definition failed (their uses are not reported as undefined)."""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    units: dict[str, UnitDef] = field(default_factory=dict)
    """The `unit` definitions of the file (`nest 2`), collected before the statements."""
    taken: frozenset[str] = frozenset(BLOCK_KINDS)
    """Names a unit of this file cannot have (the prelude's kinds, for a user's file)."""

    def error(self, code: str, message: str, span: Span | None, help: str | None = None) -> None:
        """Record a diagnostic."""
        self.diagnostics.append(error(code, message, span, help))

    def fail(self, code: str, message: str, span: Span | None, help: str | None = None) -> NoReturn:
        """Record a diagnostic and abandon the value being computed (raises :class:`Failed`)."""
        self.error(code, message, span, help)
        raise Failed()

    def undefined(self, name: str, span: Span, extra: tuple[str, ...] = ()) -> NoReturn:
        """Report a use of an undefined name (``extra``: other names valid at this place)."""
        if name in self.failed_params:
            raise Failed()
        known = (*extra, *self.params)
        hint = did_you_mean(name, known)
        listing = f"defined names: {choices(known)}" if known else None
        if not known:
            hint = "define it first with `param NAME=VALUE`"
        self.fail("E105", f"undefined name `{name}`", span, hint if hint else listing)
