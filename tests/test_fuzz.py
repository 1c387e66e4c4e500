"""Fuzzing the front end: >= 10,000 generated and mutated inputs, under a memory cap.

Each source runs in its own subprocess (the two in parallel, one per CI core) capped at
:data:`MEMORY_CAP` of address space, so an allocation blow-up is a failure here instead of an
out-of-memory kill of the test runner; a kill, a hang or any exception other than a positioned
`NestError` fails the test with the inputs that caused it. ``NESTDSL_FUZZ_COUNT`` sets the
number of inputs per source for a longer run (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEMORY_CAP = 6 * 2**30
"""Address space of a fuzzing process (PyTorch alone maps about 1.5 GiB)."""
JOBS = (("mutations", 4_500, 0), ("mutations", 4_500, 1), ("generated", 1_000, 0))
"""(source, inputs, seed) per fuzzing process: 10,000 inputs in all, 156 s of CPU time (about
80 s on 2 free cores; a generated input costs about four mutated ones)."""
TOTAL = sum(count for _, count, _ in JOBS)


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _scaled(count: int) -> int:
    """``NESTDSL_FUZZ_COUNT`` inputs in all, shared between the jobs as in CI."""
    return count * int(os.environ.get("NESTDSL_FUZZ_COUNT", TOTAL)) // TOTAL


def test_ten_thousand_inputs_fail_only_with_positioned_errors() -> None:
    base = int(os.environ.get("NESTDSL_FUZZ_SEED", "0"))
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "fuzzing.py"),
                source,
                str(_scaled(count)),
                str(base + seed),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_cap_memory,
        )
        for source, count, seed in JOBS
    ]
    total = 0
    for (source, count, _), run in zip(JOBS, runs, strict=True):
        out, err = run.communicate(timeout=3600)
        assert run.returncode in (0, 1), f"{source}: killed or crashed ({run.returncode}): {err}"
        summary = json.loads(out)
        assert summary["findings"] == [], f"{source}: {json.dumps(summary['findings'], indent=1)}"
        assert summary["total"] == _scaled(count)
        total += summary["total"]
    assert total == _scaled(TOTAL)
