"""docs/gallery.md stays in step with specs/: every shipped spec, its spec text, its SVG."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nestdsl.draw import gallery

ROOT = Path(__file__).resolve().parent.parent


def test_committed_page_is_current() -> None:
    """Adding, renaming or editing a spec without `python -m nestdsl.draw.gallery` fails."""
    assert (ROOT / "docs" / "gallery.md").read_text(encoding="utf-8") == gallery.page(ROOT)


def test_every_spec_has_its_image() -> None:
    listed = gallery.entries(ROOT)
    assert len(listed) == len(list((ROOT / "specs").rglob("*.nest")))
    for entry in listed:
        for name in entry.images:
            image = ROOT / "docs" / "img" / "gallery" / name
            assert image.read_bytes().lstrip().startswith(b"<?xml"), image
    stripes = {entry.image for entry in listed if entry.stripes}
    assert {"digits_depth", "sparse_resnet98_eann", "resnet42_width"} <= stripes
    assert not stripes & {"digits_width", "resnet50", "zoo/resnet34"}  # stripes by default, plain


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
def test_write(tmp_path: Path) -> None:
    (tmp_path / "specs" / "zoo").mkdir(parents=True)
    shutil.copy(ROOT / "specs" / "digits_width.nest", tmp_path / "specs")
    shutil.copy(ROOT / "specs" / "digits_depth.nest", tmp_path / "specs")
    shutil.copy(ROOT / "specs" / "zoo" / "resnet34.nest", tmp_path / "specs" / "zoo")
    written = gallery.write(tmp_path)
    names = sorted(path.name for path in written)
    assert names == [
        "digits_depth.svg",
        "digits_depth_stripes.svg",
        "digits_width.svg",
        "gallery.md",
        "zoo_resnet34.svg",
    ]
    text = (tmp_path / "docs" / "gallery.md").read_text(encoding="utf-8")
    assert "img/gallery/zoo_resnet34.svg" in text and "network digits_width" in text
