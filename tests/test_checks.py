"""Whole-spec checks: each rule fires on the smallest bad spec and stays quiet on good ones."""

from __future__ import annotations

import pytest

from nestdsl.checks import check
from nestdsl.parse import parse


def spec_text(
    schedule: str = "",
    kind: str = "sparse_resnet",
    counts: tuple[int, ...] = (8, 8),
    channels: tuple[int, ...] = (16, 32),
    stem: str = "stem conv channels=16",
    shape: str = "(3, 32, 32)",
    strides: tuple[int, ...] = (1, 2),
) -> str:
    lines = ["nest 1", f"input shape={shape}", stem]
    for index, (count, width, stride) in enumerate(zip(counts, channels, strides, strict=True)):
        lines.append(f"block b{index + 1} {kind} count={count} channels={width} stride={stride}")
    lines.append("head classes=10")
    if schedule:
        lines.append(f"schedule {schedule}")
    return "\n".join(lines) + "\n"


def codes(text: str) -> list[str]:
    return [d.code for d in check(parse(text, "t.nest"))]


@pytest.mark.parametrize(
    "schedule",
    [
        "",
        "width * 2",
        "depth * 3",
        "(width, depth) * 2",
        "(width + depth) * 2",
        "cascade * 3",
        "even_width * 3",
    ],
)
def test_good_specs_pass(schedule: str) -> None:
    text = spec_text(schedule, channels=(48, 96), stem="stem conv channels=48")
    assert codes(text) == []


def test_plain_network_has_no_schedule_constraints() -> None:
    assert codes(spec_text(kind="basic", counts=(3, 5), channels=(7, 13))) == []


def test_duplicate_block_names() -> None:
    text = spec_text().replace("block b2", "block b1")
    (diagnostic,) = check(parse(text, "t.nest"))
    assert diagnostic.code == "E107"
    assert diagnostic.span is not None and diagnostic.span.line == 5
    assert "line 4" in (diagnostic.help or "")


def test_width_divisibility_points_at_channels() -> None:
    text = spec_text("width * 2", channels=(24, 30), stem="stem conv channels=18")
    diagnostics = check(parse(text, "t.nest"))
    assert [d.code for d in diagnostics] == ["E301", "E301"]
    stem, b2 = diagnostics
    assert stem.message.startswith("the stem has 18 channels")
    assert b2.message == (
        "block `b2` has 30 channels, which `width * 2` splits 1:1:2 into stripes: "
        "needs a multiple of 4"
    )
    assert b2.help == "use 28 or 32 channels"
    assert b2.span is not None and (b2.span.line, b2.span.column) == (5, 41)


def test_even_width_divisibility() -> None:
    text = spec_text("even_width * 2", channels=(24, 32), stem="stem conv channels=18")
    assert codes(text) == ["E301"]


def test_depth_needs_sparse_blocks() -> None:
    diagnostics = check(parse(spec_text("depth", kind="basic"), "t.nest"))
    assert [d.code for d in diagnostics] == ["E302", "E302"]
    assert diagnostics[0].span is not None and diagnostics[0].span.column == 10


def test_depth_count_divisibility() -> None:
    text = spec_text("depth * 3", counts=(8, 12))
    diagnostics = check(parse(text, "t.nest"))
    assert [d.code for d in diagnostics] == ["E303"]
    assert "needs a multiple of 8" in diagnostics[0].message
    assert diagnostics[0].help == "use count=8 or count=16"


def test_sparsenet_allowed_for_depth() -> None:
    assert codes(spec_text("depth * 2", kind="sparsenet", counts=(4, 8))) == []


def test_cascade_total_count() -> None:
    assert codes(spec_text("cascade * 3", kind="basic", counts=(3, 5))) == []
    assert codes(spec_text("cascade * 3", kind="basic", counts=(3, 4))) == ["E304"]


def test_cascade_mixed() -> None:
    assert codes(spec_text("cascade width")) == ["E305"]
    assert codes(spec_text("cascade + depth")) == ["E305"]


def test_simultaneous_rules() -> None:
    assert codes(spec_text("depth + depth")) == ["E306"]
    assert codes(spec_text("(width + width) * 3")) == ["E306"]
    assert codes(spec_text("width + even_width")) == ["E307"]


def test_spatial_size() -> None:
    assert codes(spec_text(shape="(3, 2, 2)")) == []
    assert codes(spec_text(shape="(3, 1, 8)")) == ["E203"]
    text = spec_text(shape="(3, 4, 4)", stem="stem conv channels=16 stride=2 pool=max")
    assert codes(text) == ["E203"]
    (diagnostic,) = check(parse(text, "t.nest"))
    assert "block `b2`" in diagnostic.message


def test_check_never_raises_and_collects() -> None:
    text = spec_text("depth * 2", kind="basic", counts=(3, 3), shape="(3, 1, 1)")
    text = text.replace("block b2", "block b1")
    assert sorted(codes(text)) == ["E107", "E203", "E302", "E302"]
