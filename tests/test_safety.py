"""A spec is data: nothing in it runs Python or reads a file (docs/reliability.md, Safety)."""

from __future__ import annotations

from pathlib import Path

import pytest

import nestdsl
from nestdsl.diagnostics import NestError

TINY = Path(__file__).resolve().parent / "golden" / "cli" / "tiny.nest"


@pytest.mark.parametrize(
    "value",
    [
        '__import__("os").system("touch {marker}")',
        'open("{secret}")',
        'eval("1")',
        "__builtins__",
    ],
)
def test_a_spec_cannot_run_code_or_touch_files(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "touched"
    secret = tmp_path / "secret"
    secret.write_text("the content")
    text = (
        TINY.read_text() + f"param z = {value.format(marker=marker, secret=secret)}\nparam y = z\n"
    )
    with pytest.raises(NestError) as caught:
        nestdsl.loads(text)
    assert all(d.span is not None for d in caught.value.diagnostics)
    assert not marker.exists()
    assert "the content" not in caught.value.render()
