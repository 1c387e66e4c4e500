"""Write DOT source to a file: the text itself, or an image rendered by Graphviz's `dot`.

The output format follows the file suffix through a table, so adding one is one entry. Every
failure a user can cause or fix (unknown suffix, Graphviz not installed, `dot` rejecting the
input) becomes a :class:`NestError`, rendered by the CLI like any other diagnostic.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import graphviz

from nestdsl import diagnostics

INSTALL_HELP = (
    "install Graphviz (`apt-get install graphviz` on Debian/Ubuntu, `brew install graphviz` "
    "on macOS); meanwhile write the DOT source with `-o FILE.dot`"
)


def _write_text(source: str, path: Path) -> None:
    path.write_text(source, encoding="utf-8")


def _graphviz(fmt: str) -> Callable[[str, Path], None]:
    """A renderer piping the source through `dot -T<fmt>` (no temporary files)."""

    def run(source: str, path: Path) -> None:
        try:
            data = graphviz.Source(source).pipe(format=fmt, quiet=True)
        except graphviz.ExecutableNotFound:
            diagnostics.fail(
                code="E902",
                message=f"cannot render `{path}`: Graphviz's `dot` program is not "
                "installed or not on PATH",
                help=INSTALL_HELP,
            )
        except subprocess.CalledProcessError as error:
            stderr = error.stderr.decode(errors="replace").strip() if error.stderr else ""
            diagnostics.fail(
                code="E903",
                message=f"Graphviz failed to render `{path}`",
                notes=(stderr,) if stderr else (),
                help="write the DOT source with `-o FILE.dot` and report the problem",
            )
        path.write_bytes(data)

    return run


RENDERERS: Mapping[str, Callable[[str, Path], None]] = {
    ".svg": _graphviz("svg"),
    ".png": _graphviz("png"),
    ".pdf": _graphviz("pdf"),
    ".dot": _write_text,
    ".gv": _write_text,
}
"""File suffix → writer."""


def render(dot_source: str, path: Path) -> None:
    """Write ``dot_source`` to ``path`` in the format its suffix names."""
    path = Path(path)
    renderer = RENDERERS.get(path.suffix.lower())
    if renderer is None:
        supported = ", ".join(f"`{s}`" for s in RENDERERS)
        shown = f"`{path.suffix}`" if path.suffix else "no suffix"
        diagnostics.fail(
            code="E901",
            message=f"cannot draw to `{path}`: unknown format ({shown})",
            help=f"name the output file with one of {supported}",
        )
    renderer(dot_source, path)
