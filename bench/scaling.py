"""Benchmark: how costs grow — step time with stages and size, front-end time with layers.

Three series, each printed with a fitted exponent b of ``time ≈ a · size^b`` (least squares on
logarithms: b = 1 is linear growth):

- ``stages``: one OSGD and one SGD training step of `digits_width`'s network (w = 32) nested
  by ``schedule width * (n - 1)``, n = 2..6 stages: the same full network, more stages;
- ``size``: the same step for `digits_width` at widths w = 8..64 (3 stages): FLOPs grow about
  as w², so a step whose cost is its arithmetic grows with b near 2, and fixed per-op costs
  show as a smaller b;
- ``layers``: the front end — load (parse + checks) + IR + cost, what ``nestdsl compile SPEC``
  does — and, separately, building the module (``nestdsl.compile``) of generated width- and
  depth-nested specs from about 10 to 1,000 layers; and the front end of every shipped spec
  (each must take under 1 s; building a module is bound by its parameter count, see
  ``bench/load_compile_zoo.py``).

Medians over repeats, the sizes of a series interleaved round by round.

    python bench/scaling.py [--series stages,size,layers] [--repeats 5] [--batch 16]
        [--threads 1] [--device cuda]

The step series run as the trainer does on ``--device`` (per-task gradients through the graph
``--task-graph auto`` picks there); the front-end series is CPU work whatever the device.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from step_costs import runtime_for

import nestdsl
from nestdsl.parse.prelude import prelude_units
from nestdsl.train.batch_step import StepPlan, mode_of, train_step
from nestdsl.train.config import make_config
from nestdsl.train.engine import loss_memberships

ROOT = Path(__file__).resolve().parent.parent
BASE = """nest 1
network scaled
param w = {width}
input    shape=(1, 16, 16)
stem     conv channels=w kernel=3
block    s1 {kind} count={count} channels=w   stride=1
block    s2 {kind} count={count} channels=2*w stride=2
head     classes=10
schedule {schedule}
"""
"""Two blocks on 16×16 inputs: `digits_width` with a free width, kind, depth and schedule."""


def spec_text(width: int, schedule: str, *, kind: str = "basic", count: int = 1) -> str:
    return BASE.format(width=width, schedule=schedule, kind=kind, count=count)


def fitted_exponent(sizes: list[float], times: list[float]) -> float:
    """b of the least-squares fit log t = log a + b log size."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def interleaved(actions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each action, all actions run once per round."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def step_action(text: str, strategy: str, args: argparse.Namespace) -> Callable[[], object]:
    """One training step of the spec's network, as the trainer runs it on ``args.device``
    (on CUDA: autocast and channels_last; the step waits for the device), warmed up."""
    device = torch.device(args.device)
    runtime = runtime_for(device)
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.loads(text)).to(device).train()
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    params = list(dict.fromkeys(net.parameters()))
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True)
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    mode = mode_of(make_config(strategy=strategy), device.type)
    plan = StepPlan(
        mode, net, strategy, loss_memberships(net), optimizer, scaler=scaler, capture=net.bank
    )
    x = runtime.to_device(torch.randn(args.batch, *net.input_shape))
    y = torch.randint(0, 10, (args.batch,), device=device)

    def step() -> object:
        losses = train_step(plan, runtime, x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return losses

    step(), step()
    return step


def step_series(title: str, texts: dict[float, str], args: argparse.Namespace) -> None:
    actions = {
        f"{strategy} {size:g}": step_action(text, strategy, args)
        for size, text in texts.items()
        for strategy in ("sgd", "osgd")
    }
    medians = interleaved(actions, args.repeats)
    sizes = list(texts)
    print(f"\n{title}, batch {args.batch}, {args.device}")
    print(f"  {title.split()[0]:>8s} {'sgd ms':>9s} {'osgd ms':>9s} {'osgd/sgd':>9s}")
    for size in sizes:
        sgd, osgd = medians[f"sgd {size:g}"], medians[f"osgd {size:g}"]
        print(f"  {size:8g} {sgd * 1e3:9.1f} {osgd * 1e3:9.1f} {osgd / sgd:9.2f}")
    for strategy in ("sgd", "osgd"):
        exponent = fitted_exponent(sizes, [medians[f"{strategy} {s:g}"] for s in sizes])
        print(f"  {strategy}: time grows as {title.split()[0]}^{exponent:.2f}")


def front_end(text: str) -> int:
    """What `nestdsl compile SPEC` does: load, check, lower, cost; the IR's layer count."""
    ir = nestdsl.build_ir(nestdsl.loads(text))
    nestdsl.stage_costs(ir)
    return len(ir.layers)


def module(text: str) -> object:
    """Load and build the `nn.Module` (allocating and initializing every weight)."""
    return nestdsl.compile(nestdsl.loads(text))


def layer_series(args: argparse.Namespace) -> None:
    prelude_units()
    generated = {
        **{f"width basic x{c}": spec_text(8, "width * 2", count=c) for c in (2, 8, 32, 80, 165)},
        **{
            f"depth sparse x{c}": spec_text(8, "depth * 2", kind="sparse_resnet", count=c)
            for c in (4, 16, 64, 252, 500)
        },
    }
    shipped = {
        str(path.relative_to(ROOT)): path.read_text()
        for path in sorted((ROOT / "specs").rglob("*.nest"))
    }
    layers = {name: front_end(text) for name, text in {**generated, **shipped}.items()}
    actions: dict[str, Callable[[], object]] = {}
    for name, text in generated.items():
        actions[f"front {name}"] = functools.partial(front_end, text)
        actions[f"module {name}"] = functools.partial(module, text)
    medians = interleaved(actions, args.repeats)
    print("\ngenerated specs (w = 8): load + check + IR + cost (front end), and module build")
    print(f"  {'spec':22s} {'layers':>6s} {'front s':>8s} {'ms/layer':>9s} {'module s':>9s}")
    for family in ("width", "depth"):
        names = [n for n in generated if n.startswith(family)]
        for name in names:
            front = medians[f"front {name}"]
            print(
                f"  {name:22s} {layers[name]:6d} {front:8.3f} {front / layers[name] * 1e3:9.2f}"
                f" {medians[f'module {name}']:9.3f}"
            )
        sizes = [float(layers[n]) for n in names]
        for part in ("front", "module"):
            exponent = fitted_exponent(sizes, [medians[f"{part} {n}"] for n in names])
            print(f"  {family}, {part}: time grows as layers^{exponent:.2f}")
    shipped_medians = interleaved(
        {name: functools.partial(front_end, text) for name, text in shipped.items()}, args.repeats
    )
    print("\nshipped specs, front end (load + check + IR + cost)")
    for name, seconds in sorted(shipped_medians.items(), key=lambda item: -item[1]):
        print(f"  {name:45s} {layers[name]:6d} layers {seconds:8.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--series", default="stages,size,layers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    series = args.series.split(",")
    if "stages" in series:
        texts = {float(n): spec_text(32, f"width * {n - 1}") for n in range(2, 7)}
        step_series("stages (width * (n-1), w = 32)", texts, args)
    if "size" in series:
        texts = {float(w): spec_text(w, "width * 2") for w in (8, 16, 32, 64)}
        step_series("width w (3 stages)", texts, args)
    if "layers" in series:
        layer_series(args)


if __name__ == "__main__":
    main()
