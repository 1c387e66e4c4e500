"""The parser: good specs give the expected AST values and spans; bad ones, clear errors."""

from __future__ import annotations

import pytest

from nestdsl.ast import Spec
from nestdsl.diagnostics import NestError
from nestdsl.parse import parse
from nestdsl.schedule import expand

EXAMPLE = """\
nest 1                                   # version line
# A small width-nested ResNet for the 8x8 digits (resized to 16x16).
network digits_resnet
param w = 32
param n = 2

input   shape=(1, 16, 16)
stem    conv channels=w kernel=3 stride=1 pool=none
block   s1 basic count=n channels=w   stride=1
block   s2 basic count=n channels=2*w stride=2
head    classes=10
schedule width * 2
"""

BASE = """\
nest 1
param w = 16
param n = 8
input shape=(3, 32, 32)
stem conv channels=w
block s1 sparse_resnet count=n channels=w
head classes=10
"""


def with_schedule(schedule: str) -> Spec:
    return parse(BASE + f"schedule {schedule}\n")


def codes(text: str) -> list[str]:
    with pytest.raises(NestError) as info:
        parse(text, "t.nest")
    return [d.code for d in info.value.diagnostics]


def kinds(spec: Spec) -> list[tuple[str, ...]]:
    return [step.kinds for step in spec.schedule.steps]


def test_example_values() -> None:
    spec = parse(EXAMPLE, "ex.nest")
    assert spec.version == 1
    assert spec.name == "digits_resnet"
    assert spec.params == {"w": 32, "n": 2}
    assert (spec.input.channels, spec.input.height, spec.input.width) == (1, 16, 16)
    assert (spec.stem.channels, spec.stem.kernel, spec.stem.stride, spec.stem.pool) == (
        32,
        3,
        1,
        "none",
    )
    assert [(b.name, b.kind, b.count, b.channels, b.stride) for b in spec.blocks] == [
        ("s1", "basic", 2, 32, 1),
        ("s2", "basic", 2, 64, 2),
    ]
    assert spec.head.classes == 10
    assert kinds(spec) == [("width",), ("width",)]
    assert spec.source == EXAMPLE
    assert spec.path == "ex.nest"


def test_spans_point_at_values() -> None:
    spec = parse(EXAMPLE, "ex.nest")
    assert (spec.span.line, spec.span.column) == (1, 1)
    s2 = spec.blocks[1]
    assert s2.span.line == 10 and s2.span.column == 1
    channels = s2.span_of("channels")
    line = EXAMPLE.splitlines()[channels.line - 1]
    assert line[channels.column - 1 : channels.end_column - 1] == "2*w"
    assert spec.stem.span_of("pool").column == EXAMPLE.splitlines()[7].index("none") + 1
    assert s2.span_of("name").column == 9
    assert s2.span_of("kind").column == 12
    step = spec.schedule.steps[0]
    assert (step.span.line, step.span.column, step.span.end_column) == (12, 10, 15)
    assert all(n.span.file == "ex.nest" for n in (spec.input, spec.stem, spec.head))


def test_defaults() -> None:
    text = BASE.replace("block s1 sparse_resnet", "block s1 bottleneck")
    spec = parse(text, "dir/my_net.nest")
    assert spec.name == "my_net"
    assert spec.stem.kernel == 3 and spec.stem.stride == 1 and spec.stem.pool == "none"
    assert spec.blocks[0].stride == 1 and spec.blocks[0].expansion == 4
    assert spec.schedule.steps == ()
    assert parse(BASE).name == "network"


def test_stem_kind_optional_and_pool_max() -> None:
    spec = parse(BASE.replace("stem conv channels=w", "stem channels=w pool=max stride=2"))
    assert spec.stem.pool == "max" and spec.stem.stride == 2


def test_bottleneck_expansion() -> None:
    text = BASE.replace(
        "sparse_resnet count=n channels=w", "bottleneck count=3 channels=w expansion=2"
    )
    assert parse(text).blocks[0].expansion == 2


def test_params_and_expressions() -> None:
    text = BASE.replace(
        "param n = 8",
        'param n = 8 half = w // 2 ratio = 1.5 label = "x" s = (w + 2) * 3 - 6 / 3',
    )
    spec = parse(text)
    assert spec.params == {"w": 16, "n": 8, "half": 8, "ratio": 1.5, "label": "x", "s": 52.0}


def test_precedence() -> None:
    text = BASE.replace("param n = 8", "param n = 2 + 3 * 2 a = 7 - 2 - 1 b = 8 // 2 // 2")
    assert parse(text).params == {"w": 16, "n": 8, "a": 4, "b": 2}


def test_comments_blank_lines_crlf_and_no_final_newline() -> None:
    text = "\n\n# leading comment\n  # indented comment\n" + BASE.rstrip("\n")
    assert parse(text).head.classes == 10
    assert parse(BASE.replace("\n", "\r\n")).head.classes == 10
    assert (
        parse(BASE.replace("head classes=10", "head classes=10   # ten digits")).head.classes == 10
    )


def test_statement_order_is_free_blocks_keep_order() -> None:
    text = (
        "nest 1\nhead classes=3\nblock b basic count=1 channels=8\n"
        "schedule width\nblock a basic count=1 channels=8\nstem conv channels=8\n"
        "input shape=(1, 8, 8)\n"
    )
    spec = parse(text)
    assert [b.name for b in spec.blocks] == ["b", "a"]


@pytest.mark.parametrize(
    ("schedule", "expected", "labels"),
    [
        ("width * 2", [("width",), ("width",)], ("w1", "w2", "w4")),
        ("depth * 3", [("depth",)] * 3, ("d1", "d2", "d4", "d8")),
        (
            "(width, depth) * 2",
            [("width",), ("depth",), ("width",), ("depth",)],
            ("w1d1", "w2d1", "w2d2", "w4d2", "w4d4"),
        ),
        (
            "width depth width depth",
            [("width",), ("depth",), ("width",), ("depth",)],
            ("w1d1", "w2d1", "w2d2", "w4d2", "w4d4"),
        ),
        ("(width + depth) * 2", [("width", "depth")] * 2, ("w1d1", "w2d2", "w4d4")),
        ("even_width * 3", [("even_width",)] * 3, ("w1", "w2", "w3", "w4")),
        ("cascade * 3", [("cascade",)] * 3, ("d1", "d2", "d4", "d8")),
        ("2 * width", [("width",)] * 2, ("w1", "w2", "w4")),
        ("width * (n // 4)", [("width",)] * 2, ("w1", "w2", "w4")),
        ("(width)", [("width",)], ("w1", "w2")),
        ("(width, (depth, width))", [("width",), ("depth",), ("width",)], None),
        ("", [], ("w1",)),
    ],
)
def test_schedule_algebra(schedule: str, expected: list, labels: tuple | None) -> None:
    spec = with_schedule(schedule)
    assert kinds(spec) == expected
    if labels is not None:
        assert expand(spec.schedule).labels == labels


def test_schedule_equivalences() -> None:
    assert kinds(with_schedule("width depth width depth")) == kinds(
        with_schedule("(width, depth) * 2")
    )


def test_growth_step_spans() -> None:
    spec = with_schedule("(width + depth) * 2 width")
    first, _, last = spec.schedule.steps
    assert (first.span.column, first.span.end_column) == (11, 24)
    assert (last.span.column, last.span.end_column) == (30, 35)
    assert spec.schedule.spans["steps"].column == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE.replace("stem conv channels=w", "stem conv channels==w"), ["E001"]),
        (BASE.rstrip("\n") + "\nschedule (width", ["E002"]),
        (BASE.replace("param n = 8", "param n = 8$"), ["E003"]),
        (BASE.replace("nest 1\n", ""), ["E004"]),
        (BASE.replace("nest 1\n", "") + "nest 1\n", ["E004"]),
        (BASE.replace("nest 1", "nest 3"), ["E005"]),
        (BASE.replace("head classes", "haed classes"), ["E101"]),
        (BASE.replace("count=n", "cont=n"), ["E102"]),
        (BASE.replace("head classes=10", "head"), ["E103"]),
        (BASE.replace("head classes=10", 'head classes="a"'), ["E104"]),
        (BASE.replace("head classes=10", "head classes=2.5"), ["E104"]),
        (BASE.replace("channels=w\nblock", "channels=w/2\nblock"), ["E104"]),
        (BASE.replace("(3, 32, 32)", "(3, 32)"), ["E104"]),
        (BASE.replace("(3, 32, 32)", "3"), ["E104"]),
        (BASE.replace("param n = 8", "param n = (1, 2)"), ["E104"]),
        (BASE.replace("count=n", "count=m"), ["E105"]),
        (BASE.replace("sparse_resnet", "bottlenek"), ["E106"]),
        (BASE.replace("sparse_resnet", "7"), ["E104"]),
        (BASE.replace("stem conv", "stem dense"), ["E106"]),
        (
            BASE.replace("stem conv channels=w", "stem conv channels=w\nstem conv channels=w"),
            ["E108"],
        ),
        (BASE.replace("nest 1\n", "nest 1\nnetwork a\nnetwork b\n"), ["E108"]),
        (BASE.replace("head classes=10\n", ""), ["E109"]),
        (BASE.replace("block s1 sparse_resnet count=n channels=w\n", ""), ["E109"]),
        (BASE.replace("head classes=10", "head 10"), ["E110"]),
        (BASE.replace("param w = 16", "param 16"), ["E110"] + ["E105"] * 2),
        (BASE.replace("head classes=10", "head classes=10 classes=10"), ["E111"]),
        (BASE.replace("param n = 8", "param n = 8 w = 2"), ["E112"]),
        (BASE.replace("param n = 8", "param n = 8 width = 2"), ["E112"]),
        (BASE.replace("channels=w\nhead", "channels=w expansion=2\nhead"), ["E113"]),
        (BASE.replace("count=n", "count=0"), ["E201"]),
        (BASE.replace("count=n", "count=n-8"), ["E201"]),
        (BASE.replace("count=n", "count=n // 0"), ["E202"]),
        (BASE + "schedule width * 0\n", ["E308"]),
        (BASE + "schedule width * depth\n", ["E104"]),
        (BASE + "schedule width + 2\n", ["E104"]),
        (BASE + "schedule 3\n", ["E104"]),
        (BASE + "schedule width * 1.5\n", ["E104"]),
        (BASE + "schedule widht\n", ["E105"]),
        (BASE + "schedule width - depth\n", ["E104"]),
        (BASE + "schedule width count=2\n", ["E102"]),
        (BASE + "schedule width * 1000000000000\n", ["E309"]),
        (BASE + "schedule width * 64 width\n", ["E309"]),
    ],
)
def test_error_codes(text: str, expected: list[str]) -> None:
    assert codes(text) == expected


def test_all_syntax_errors_reported() -> None:
    text = BASE.replace("param n = 8", "param n = 8)").replace("head classes=10", "head classes=")
    found = codes(text)
    assert found.count("E001") == 2


def test_undefined_name_suggests() -> None:
    with pytest.raises(NestError) as info:
        parse(BASE.replace("count=n", "count=nn"), "t.nest")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.help == "did you mean `n`?"
    assert diagnostic.span is not None and diagnostic.span.line == 6


def test_error_renders_with_path_and_caret() -> None:
    with pytest.raises(NestError) as info:
        parse(BASE.replace("sparse_resnet", "bottlenek"), "t.nest")
    text = str(info.value)
    assert "error[E106]: unknown block kind `bottlenek` in block `s1`" in text
    assert "--> t.nest:6:10" in text
    assert "^^^^^^^^^" in text
    assert "did you mean `bottleneck`?" in text
    assert "__ANON" not in text


def test_lark_terminal_names_never_shown() -> None:
    for bad in ("param a = 2 // // 3", "param a = 2 +", "param a = (1,,)", "param = 3"):
        with pytest.raises(NestError) as info:
            parse(BASE.replace("param n = 8", bad + "\nparam n = 8"), "t.nest")
        rendered = str(info.value)
        for raw in ("__ANON", "_NL", "$END", "LPAR", "RPAR", "NAME", "EQUAL"):
            assert raw not in rendered


def test_empty_file() -> None:
    assert codes("") == ["E004", "E109", "E109", "E109", "E109"]
    assert codes("# nothing here\n")[0] == "E004"
