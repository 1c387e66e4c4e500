"""Output files checked before work starts, and written with OS errors as diagnostics.

A command that would fail to save its result should say so before spending time on it, and
never with a traceback: a missing folder, a folder given as a file, a read-only place are all
the user's to fix, so each is an ``E905`` diagnostic naming the path and the reason.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NoReturn

from nestdsl.diagnostics import Diagnostic, NestError


def cannot_write(path: Path, reason: str, help: str | None = None) -> NoReturn:
    """Raise the E905 diagnostic for an output that cannot be written."""
    raise NestError(
        [Diagnostic(code="E905", message=f"cannot write `{path}`: {reason}", help=help)]
    )


def check_output(path: Path) -> None:
    """Refuse an output file whose folder is missing or not writable, or that is a folder."""
    if path.is_dir():
        cannot_write(path, "it is a folder", help="give a file name, e.g. -o out/arch.svg")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        cannot_write(
            path,
            f"the folder `{parent}` does not exist",
            help=f"create it first (mkdir -p {parent}) or write elsewhere",
        )
    if path.exists():
        if not os.access(path, os.W_OK):
            cannot_write(path, "permission denied")
        return
    reason = unwritable(parent)
    if reason is not None:
        cannot_write(path, reason)


def unwritable(folder: Path) -> str | None:
    """Why nothing can be created in ``folder``, or None when something can.

    It tries (a temporary file, removed at once) rather than asking ``os.access``, which says
    yes to root even where nothing can be created (``/sys``, ``/proc``).
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".nestdsl-probe-"):
            return None
    except OSError as error:
        return error.strerror or str(error)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text after :func:`check_output`; an OS error is still an E905 diagnostic."""
    check_output(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        cannot_write(path, error.strerror or str(error))
