"""Benchmark: how long `nestdsl` takes to answer when nothing needs PyTorch.

`nestdsl --help`, `nestdsl compile --help` and `nestdsl compile SPEC` never import PyTorch
(the commands import it only when they run a network), so they should cost about what
starting Python and the command line's own packages cost. Measured side by side with
`python -c "import torch"`, the floor any command that does import it pays. The last row
builds the digits datasets, which `nestdsl train` and `nestdsl eval` on the default source
do first: it should cost little more than that floor. Each command is a fresh process;
medians over repeats, commands interleaved so machine noise hits all alike.

    python bench/cli_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = [sys.executable, "-m", "nestdsl.cli"]
COMMANDS = {
    "nestdsl --help": [*ENTRY, "--help"],
    "nestdsl compile --help": [*ENTRY, "compile", "--help"],
    "nestdsl compile specs/digits_width.nest": [*ENTRY, "compile", "specs/digits_width.nest"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "load the digits (what a run on them reads first)": [
        sys.executable,
        "-c",
        "from nestdsl.data import build_datasets; build_datasets('digits', (1, 16, 16))",
    ],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    floor = statistics.median(times['python -c "import torch"'])
    print(f"{'command':50} {'median':>9} {'vs import torch':>16}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:50} {median * 1000:7.0f} ms {median / floor:15.2f}")


if __name__ == "__main__":
    main()
