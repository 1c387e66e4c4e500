"""The front-end fuzzer: generated and mutated `.nest` inputs through `load` and `compile`.

Run as a script (``python tests/fuzzing.py mutations 6000``) it checks inputs one by one and
prints a JSON summary; ``tests/test_fuzz.py`` starts it in a subprocess under a memory cap, so
that an allocation blow-up is a failed test, not a killed test runner. Every input must either
load, or fail with a :class:`NestError` whose every error has a source position; anything else
(another exception, a hang past :data:`PER_INPUT_S`, a kill) is a finding.

Two sources of inputs: seeded byte/token mutations of every shipped spec (the mutations a user
makes by mistake: deleted, inserted and duplicated text, swapped tokens, absurd numbers), and
Hypothesis-generated files built from the grammar's statements, `nest 2` unit definitions
included.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import random
import re
import signal
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("specs/*.nest"), *ROOT.glob("specs/zoo/*.nest")])
PER_INPUT_S = 10.0
"""An input taking longer than this is a hang (loads take milliseconds; CI is slow)."""
SMALL_PARAMS = 200_000
SMALL_ACTIVATIONS = 2_000_000
"""Inputs that load within these sizes are also compiled (larger ones only load: CI time)."""

ABSURD = ("0", "-1", "999999999", "1e9", "99999999999999999999", "0.5", "1e999", "()", '"x"')
PUNCTUATION = ("=", "(", ")", ",", "*", "/", "//", "+", "-", "#", '"', "\\", "\n", "\t", " ")
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9.]+(?:[eE][+-]?[0-9]+)?|//|\S")


class Hang(Exception):
    """Raised by the alarm when one input runs past :data:`PER_INPUT_S`."""


@dataclass
class Report:
    """What a run saw: outcomes by kind, and the findings (input, traceback) to fix."""

    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> str:
        total = sum(self.outcomes.values())
        return json.dumps(
            {"total": total, "outcomes": dict(self.outcomes), "findings": self.findings[:20]}
        )


def _alarm(signum: int, frame: FrameType | None) -> None:
    """Raise :class:`Hang`, and again every second (a garbage collector callback swallows it)."""
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    raise Hang(f"no answer within {PER_INPUT_S} s")


def check_one(text: str, report: Report) -> None:
    """Load (and, if small, compile) one input; record its outcome or the finding."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT_S)
    try:
        report.outcomes[_outcome(text)] += 1
    except Exception as error:  # the finding itself: anything but a positioned NestError
        report.outcomes["finding"] += 1
        report.findings.append(
            {"input": text[:3000], "error": "".join(traceback.format_exception(error))[-3000:]}
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _outcome(text: str) -> str:
    import nestdsl
    from nestdsl.diagnostics import NestError
    from nestdsl.ir.limits import Limits

    try:
        nestdsl.loads(text, "fuzz.nest")
    except NestError as error:
        unplaced = [d for d in error.diagnostics if d.severity == "error" and d.span is None]
        if unplaced or not error.diagnostics:
            raise AssertionError(f"an error without a source position: {unplaced}") from error
        return "rejected"
    small = Limits(max_params=SMALL_PARAMS, max_activations=SMALL_ACTIVATIONS)
    try:
        spec = nestdsl.loads(text, "fuzz.nest", small)
    except NestError:
        return "loaded"
    nestdsl.compile(spec)
    return "compiled"


def mutations(seed: int) -> Iterator[str]:
    """Endless seeded mutations, cycling through every shipped spec."""
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8") for p in SHIPPED]
    operators = _operators()
    while True:
        for text in texts:
            mutated = text
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                if mutated:
                    mutated = rng.choice(operators)(rng, mutated)
            yield mutated


def _operators() -> list[Callable[[random.Random, str], str]]:
    return [
        _delete_chars,
        _insert_char,
        _flip_byte,
        _swap_tokens,
        _absurd_number,
        _duplicate_line,
        _delete_line,
        _truncate,
        _deepen,
    ]


def _delete_chars(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text))
    return text[:at] + text[at + rng.randint(1, 8) :]


def _insert_char(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(PUNCTUATION + ABSURD) + text[at:]


def _flip_byte(rng: random.Random, text: str) -> str:
    """A random byte, decoded as a reader would (invalid UTF-8 replaced)."""
    data = bytearray(text.encode("utf-8"))
    data[rng.randrange(len(data))] = rng.randrange(256)
    return data.decode("utf-8", errors="replace")


def _swap_tokens(rng: random.Random, text: str) -> str:
    tokens = list(TOKEN.finditer(text))
    if len(tokens) < 2:
        return text
    first, second = sorted(rng.sample(tokens, 2), key=lambda m: m.start())
    return (
        text[: first.start()]
        + second.group()
        + text[first.end() : second.start()]
        + first.group()
        + text[second.end() :]
    )


def _absurd_number(rng: random.Random, text: str) -> str:
    numbers = list(re.finditer(r"\b[0-9]+\b", text))
    if not numbers:
        return text
    chosen = rng.choice(numbers)
    return text[: chosen.start()] + rng.choice(ABSURD) + text[chosen.end() :]


def _deepen(rng: random.Random, text: str) -> str:
    """A number inside many parentheses or a long sum (the stack-depth attacks)."""
    numbers = list(re.finditer(r"\b[0-9]+\b", text))
    if not numbers:
        return text
    chosen, depth = rng.choice(numbers), rng.choice((20, 130, 2000))
    deep = rng.choice(("(" * depth + "1" + ")" * depth, "+".join(["1"] * depth)))
    return text[: chosen.start()] + deep + text[chosen.end() :]


def _duplicate_line(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    at = rng.randrange(len(lines))
    return "".join(lines[: at + 1] + lines[at : at + 1] * rng.randint(1, 3) + lines[at + 1 :])


def _delete_line(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    del lines[rng.randrange(len(lines))]
    return "".join(lines)


def _truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text))]


def run_mutations(count: int, seed: int, report: Report) -> None:
    for _, text in zip(range(count), mutations(seed), strict=False):
        check_one(text, report)


def run_generated(count: int, seed: int, report: Report) -> None:
    """Hypothesis-generated files; a finding fails the run after Hypothesis shrinks it."""
    from hypothesis import HealthCheck, given, settings
    from spec_grammar import spec_files

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(spec_files())
    def each(text: str) -> None:
        before = len(report.findings)
        check_one(text, report)
        if len(report.findings) > before:
            raise AssertionError(report.findings[-1]["error"])

    with contextlib.suppress(AssertionError):  # recorded in the report
        each()


SOURCES = {"mutations": run_mutations, "generated": run_generated}


def main(argv: list[str]) -> int:
    """``fuzzing.py SOURCE COUNT [SEED]``: check COUNT inputs, print the JSON summary."""
    source, count = argv[0], int(argv[1])
    seed = int(argv[2]) if len(argv) > 2 else 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    importlib.import_module("nestdsl.compiler")  # PyTorch's import is not an input's time
    report = Report()
    SOURCES[source](count, seed, report)
    print(report.as_json())
    return 0 if not report.findings else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
