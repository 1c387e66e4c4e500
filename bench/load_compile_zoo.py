"""Benchmark: reading a zoo spec and compiling it to the IR and its cost table.

This is what `nestdsl compile SPEC` does before printing: parse (the prelude is read once per
process, outside the timing), check, lower units into the IR, count parameters and FLOPs per
stage. Issue 7 asks that the largest zoo spec stays under 1 s. Building the `nn.Module`
(allocating and initializing every weight) is timed separately: it grows with the parameter
count, not with the language. Medians over repeats.

    python bench/load_compile_zoo.py [--repeats 7] [--module]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import nestdsl
from nestdsl.parse.prelude import prelude_units

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted((ROOT / "specs" / "zoo").glob("*.nest"))


def load_and_compile(path: Path) -> int:
    """Parse, check, lower and cost one spec; its layer count."""
    ir = nestdsl.build_ir(nestdsl.load(path))
    nestdsl.stage_costs(ir)
    return len(ir.layers)


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--module", action="store_true", help="also time nestdsl.compile")
    args = parser.parse_args()
    prelude_units()
    print(f"{'spec':<18} {'layers':>6} {'params':>12} {'load+IR+cost':>13} {'module':>8}")
    for path in ZOO:
        layers = load_and_compile(path)
        (cost,) = nestdsl.stage_costs(nestdsl.build_ir(nestdsl.load(path)))
        seconds = median_seconds(lambda p=path: load_and_compile(p), args.repeats)
        module = (
            f"{median_seconds(lambda p=path: nestdsl.compile(nestdsl.load(p)), 3):7.2f}s"
            if args.module
            else "-"
        )
        print(f"{path.stem:<18} {layers:>6} {cost.params:>12,} {seconds:>12.3f}s {module:>8}")


if __name__ == "__main__":
    main()
