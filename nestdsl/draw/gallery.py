"""docs/gallery.md: every shipped spec's default diagram next to the spec itself.

`python -m nestdsl.draw.gallery` rewrites the page and its SVGs (docs/img/gallery/) from
specs/; a test checks that the committed page lists every shipped spec, in this format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nestdsl.draw.dot import to_dot
from nestdsl.draw.render import render
from nestdsl.ir import build_ir
from nestdsl.load import load

INTRO = """# Gallery

Every spec shipped in [`specs/`](../specs) drawn with the default view, exactly as
`nestdsl draw SPEC -o FILE.svg` draws it (see [drawing.md](drawing.md) for how to read a
diagram). The legend above each diagram gives every stage's parameters and FLOPs (MACs) of
D_k deployed alone. Regenerate the page and its images with `python -m nestdsl.draw.gallery`.
"""


@dataclass(frozen=True)
class Entry:
    """One shipped spec: where it lives (relative to the repository) and its image name."""

    spec: Path
    image: str


def entries(root: Path) -> list[Entry]:
    """Every shipped spec (specs/ and specs/zoo/), in path order."""
    specs = sorted((root / "specs").rglob("*.nest"))
    return [
        Entry(path.relative_to(root), f"{path.relative_to(root / 'specs').with_suffix('')}")
        for path in specs
    ]


def _section(root: Path, entry: Entry) -> str:
    name = entry.image.replace("/", "_")
    source = (root / entry.spec).read_text(encoding="utf-8").rstrip()
    return (
        f"## {entry.image}\n\n"
        f"[`{entry.spec.as_posix()}`](../{entry.spec.as_posix()})\n\n"
        f"![default diagram of {entry.image}](img/gallery/{name}.svg)\n\n"
        "<details><summary>spec</summary>\n\n"
        f"```\n{source}\n```\n\n</details>\n"
    )


def page(root: Path) -> str:
    """The Markdown of docs/gallery.md."""
    return "\n".join([INTRO, *(_section(root, entry) for entry in entries(root))])


def write(root: Path) -> list[Path]:
    """Rewrite docs/gallery.md and one SVG per shipped spec; the files written."""
    images = root / "docs" / "img" / "gallery"
    images.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries(root):
        path = images / f"{entry.image.replace('/', '_')}.svg"
        render(to_dot(build_ir(load(root / entry.spec))), path)
        written.append(path)
    gallery = root / "docs" / "gallery.md"
    gallery.write_text(page(root), encoding="utf-8")
    return [*written, gallery]


if __name__ == "__main__":
    for written_path in write(Path.cwd()):
        print(written_path)
