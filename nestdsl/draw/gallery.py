"""docs/gallery.md: every shipped spec's default diagram next to the spec itself.

A nested spec whose default is the block view also shows its stripe view (`--stripes`: the
stripes, depth rows or cascade exits that explain its nesting). `python -m
nestdsl.draw.gallery` rewrites the page and its SVGs (docs/img/gallery/) from specs/; a test
checks that the committed page lists every shipped spec, in this format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nestdsl.draw.dot import to_dot
from nestdsl.draw.nodes import wants_stripes
from nestdsl.draw.render import render
from nestdsl.draw.rows import stripe_variant
from nestdsl.ir import NestIR, build_ir
from nestdsl.load import load

INTRO = """# Gallery

Every spec shipped in [`specs/`](../specs) drawn with the default view, exactly as
`nestdsl draw SPEC -o FILE.svg` draws it (see [drawing.md](drawing.md) for how to read a
diagram). The legend above each diagram gives every stage's parameters and FLOPs (MACs) of
D_k deployed alone. A nested spec drawn as blocks by default also shows its stripe view
(`--stripes`), the figure that explains how it nests. Regenerate the page and its images with
`python -m nestdsl.draw.gallery`.
"""


@dataclass(frozen=True)
class Entry:
    """One shipped spec: where it lives (relative to the repository) and its image name."""

    spec: Path
    image: str
    stripes: bool
    """The spec also gets a stripe-view image (nested, and not drawn by stripes already)."""

    @property
    def images(self) -> tuple[str, ...]:
        """Its SVG names under docs/img/gallery/: the default view, then the stripe view."""
        name = self.image.replace("/", "_")
        return (f"{name}.svg", f"{name}_stripes.svg") if self.stripes else (f"{name}.svg",)


def _has_stripe_view(ir: NestIR) -> bool:
    return stripe_variant(ir) != "none" and not wants_stripes(ir)


def entries(root: Path) -> list[Entry]:
    """Every shipped spec (specs/ and specs/zoo/), in path order."""
    specs = sorted((root / "specs").rglob("*.nest"))
    return [
        Entry(
            path.relative_to(root),
            f"{path.relative_to(root / 'specs').with_suffix('')}",
            _has_stripe_view(build_ir(load(path))),
        )
        for path in specs
    ]


def _section(root: Path, entry: Entry) -> str:
    source = (root / entry.spec).read_text(encoding="utf-8").rstrip()
    captions = (f"default diagram of {entry.image}", f"stripe view of {entry.image}")
    images = "".join(
        f"![{caption}](img/gallery/{image})\n\n"
        for caption, image in zip(captions, entry.images, strict=False)
    )
    return (
        f"## {entry.image}\n\n"
        f"[`{entry.spec.as_posix()}`](../{entry.spec.as_posix()})\n\n"
        f"{images}"
        "<details><summary>spec</summary>\n\n"
        f"```\n{source}\n```\n\n</details>\n"
    )


def page(root: Path) -> str:
    """The Markdown of docs/gallery.md."""
    return "\n".join([INTRO, *(_section(root, entry) for entry in entries(root))])


def write(root: Path) -> list[Path]:
    """Rewrite docs/gallery.md and the SVGs of every shipped spec; the files written."""
    images = root / "docs" / "img" / "gallery"
    images.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries(root):
        ir = build_ir(load(root / entry.spec))
        for image, stripes in zip(entry.images, (None, True), strict=False):
            render(to_dot(ir, stripes=stripes), images / image)
            written.append(images / image)
    gallery = root / "docs" / "gallery.md"
    gallery.write_text(page(root), encoding="utf-8")
    return [*written, gallery]


if __name__ == "__main__":
    for written_path in write(Path.cwd()):
        print(written_path)
