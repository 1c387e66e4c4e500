"""Hypothesis strategies for whole `.nest` files, following the grammar's statements.

Files are mostly well-formed (so they reach the checks, the IR builder and the compiler, not
only the parser): a version line, a name, params, `nest 2` unit definitions whose bodies call
primitives and earlier units, input, stem, blocks, head and schedule, with values drawn from
small, edge and absurd numbers and arithmetic over params. Statements are sometimes dropped,
repeated or replaced by a line of random tokens, to reach the error paths too.
"""

from __future__ import annotations

from hypothesis import strategies as st

PRIMITIVES: tuple[str, ...] = ("conv", "bn", "layernorm", "maxpool", "avgpool", "dropout")
PRIMITIVES += ("relu", "relu6", "silu", "gelu", "hardswish", "sigmoid", "hardsigmoid", "identity")
BLOCK_KINDS = ("plain", "basic", "bottleneck", "sparse_resnet", "sparsenet")
ARGUMENTS = ("channels", "kernel", "stride", "count", "out", "growth", "expand", "p", "padding")
ARGUMENTS += ("connect", "agg", "width", "shortcut", "post", "depthwise", "groups", "in")
WORDS = ("sparse", "dense", "chain", "sum", "concat", "auto", "none", "projection", "true")
WORDS += ("false", "width", "depth", "even_width", "cascade", "max", "in", "nest", "end")
CALL_ARGUMENTS = {
    "conv": ("channels", "kernel", "stride", "groups", "depthwise", "padding", "dilation", "bias"),
    "maxpool": ("kernel", "stride", "padding", "size"),
    "avgpool": ("kernel", "stride", "padding", "size"),
    "dropout": ("p",),
}
"""Valid arguments of the primitives that take any (the others take none)."""
UNIT_PARAMS = ("channels", "out", "kernel", "expand")
BLOCK_OPTIONS = ("stride", "connect", "agg", "width", "expansion")
SYMBOLS = ("=", "(", ")", ",", "*", "/", "//", "+", "-", "#", '"s"', "1.5", "()")

numbers = st.one_of(
    st.sampled_from((1, 2, 3, 4, 8, 16)),
    st.sampled_from((0, 32, 64, 999999999, 2**63, 10**30)),
)


def values(names: list[str]) -> st.SearchStrategy[str]:
    """An argument value: mostly a small number or a known name, sometimes arithmetic."""
    atoms = st.one_of(
        numbers.map(str),
        st.sampled_from([*names, "in"] if names else ["in"]),
        st.sampled_from(("1.5", "1e9", '"x"', "(1, 8, 8)", "()", "max(2, 3)", "-1")),
    )
    operators = st.sampled_from(("+", "-", "*", "/", "//"))
    arithmetic = st.tuples(atoms, operators, atoms).map(" ".join)
    return st.one_of(numbers.map(str), numbers.map(str), atoms, arithmetic)


@st.composite
def call_line(draw: st.DrawFn, callees: list[str], names: list[str]) -> str:
    """`callee key=value ...`: a body line of a unit."""
    callee = draw(st.sampled_from(callees))
    valid = CALL_ARGUMENTS.get(callee, UNIT_PARAMS)
    pool = draw(st.sampled_from((valid, valid, valid, ARGUMENTS)))
    keys = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))
    items = [f"{k}={draw(values(names))}" for k in keys]
    return " ".join([callee, *items])


@st.composite
def unit_definition(draw: st.DrawFn, index: int, known: list[str]) -> str:
    name = f"u{index}"
    params = draw(st.lists(st.sampled_from(UNIT_PARAMS), max_size=3, unique=True))
    header = " ".join(
        [f"unit {name}"] + [p + draw(st.sampled_from(("", "=1", "=3"))) for p in params]
    )
    body = draw(st.lists(call_line([*PRIMITIVES, *known], params), min_size=0, max_size=5))
    closing = draw(st.sampled_from(("end", "end", "end", "")))
    return "\n".join([header, *("  " + line for line in body), closing])


@st.composite
def block_line(draw: st.DrawFn, index: int, kinds: list[str], names: list[str]) -> str:
    kind = draw(st.sampled_from(kinds))
    pool = draw(st.sampled_from((BLOCK_OPTIONS, BLOCK_OPTIONS, ARGUMENTS)))
    keys = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
    items = [f"{k}={draw(values(names))}" for k in ("count", "channels", *keys)]
    return " ".join([f"block b{index}", kind, *items])


SCHEDULES = ("", "width * 2", "depth * 2", "(width + depth) * 2", "(width, depth) * 2")
SCHEDULES += ("cascade * 3", "even_width * 3", "width", "depth * 99", "(width, width, depth)")
schedules = st.sampled_from(SCHEDULES).map(lambda steps: f"schedule {steps}" if steps else "")


junk_lines = st.lists(
    st.sampled_from(PRIMITIVES + BLOCK_KINDS + ARGUMENTS + WORDS + SYMBOLS), max_size=8
).map(" ".join)


@st.composite
def spec_files(draw: st.DrawFn) -> str:
    """A whole file: statements in the usual order, some broken on purpose."""
    version = draw(st.sampled_from(("nest 2",) * 6 + ("nest 1", "nest 3", "")))
    params = draw(st.lists(st.sampled_from(("w", "g", "n")), max_size=2, unique=True))
    lines = [version, "network fuzz"]
    lines += [f"param {p} = {draw(values([]))}" for p in params]
    units: list[str] = []
    for index in range(draw(st.integers(0, 3))):
        lines.append(draw(unit_definition(index, units)))
        units.append(f"u{index}")
    size = draw(st.sampled_from((8, 8, 16, 1, 0)))
    lines.append(f"input shape=({draw(st.sampled_from((1, 3)))}, {size}, {size})")
    if draw(st.booleans()):
        lines.append(f"stem conv channels={draw(values(params))}")
    for index in range(draw(st.integers(1, 3))):
        lines.append(draw(block_line(index, [*BLOCK_KINDS, *units], params)))
    lines.append(f"head classes={draw(values(params))}")
    lines.append(draw(schedules))
    return "\n".join(_break(draw, lines)) + "\n"


def _break(draw: st.DrawFn, lines: list[str]) -> list[str]:
    """Sometimes drop, repeat or replace one line by junk."""
    action = draw(st.sampled_from(("keep", "keep", "keep", "drop", "repeat", "junk")))
    if action == "keep" or not lines:
        return lines
    at = draw(st.integers(0, len(lines) - 1))
    replacement = {"drop": [], "repeat": [lines[at]] * 2, "junk": [draw(junk_lines)]}[action]
    return lines[:at] + replacement + lines[at + 1 :]
