"""Benchmark: the cost of per-task gradients — time, FLOPs, memory, ops and syncs per step.

For each spec and strategy, one full training step (forward, gradients, combination,
optimizer step) is compared with SGD's step (one joint forward and backward):

- time: medians over repeats, strategies interleaved so machine noise hits all alike, and
  the ratio to SGD printed next to the *ideal* ratio (issue 13's definition): FLOPs
  (torch.utils.flop_counter) of forward(D_n) + Σ_k backward(D_k) over forward + backward of
  D_n, every pass counted without the pruned back-edge entries (the joint pass under
  block-wise execution), so that the ideal depends on the network, not on how a path runs
  it; and the time of the bare passes a strategy runs, so that step/bare is what the step
  adds to them (combination, writes, optimizer);
- peak memory allocated during a step above what was live at its start (CUDA allocator
  statistics on a GPU, the torch profiler's memory events on a CPU);
- aten ops dispatched per step over those of the bare passes, and host-device
  synchronisations per step (`nestdsl.profiling.DispatchCounter`): what a GPU punishes,
  measured on any machine; and **rest ops**, the ops dispatched after the step's forward and
  backward passes (``finish_step``: coefficients, write, optimizer), all that the host still
  dispatches per step when ``--cuda-graphs`` replays the passes.

    python bench/step_costs.py [SPEC ...] [--batch 16] [--repeats 7] [--device cpu]
        [--strategies sgd,sgd-norm,osgd,osgd-norm] [--task-graphs anytime,joint] [--threads N]
        [--compile default,reduce-overhead] [--per-layer] [--cuda-graphs]

``--task-graphs`` runs each per-task strategy once per graph its gradients are taken through
(``TrainConfig.task_graph``), labelled ``osgd/anytime``, ``osgd/joint``; by default each runs
through the graph ``task_graph="auto"`` picks for the device.

``--compile MODE[,MODE]`` adds, for every case whose forward is the joint pass, the same step
on the network compiled by ``torch.compile`` in that mode (``default``, ``reduce-overhead``:
CUDA graphs on a GPU, ``max-autotune``), as ``nestdsl train --torch-compile`` runs it (mode
``default``); labelled ``sgd+default``, ``osgd/joint+default``. (``reduce-overhead`` failed on
an H100: a step's backward read a CUDA-graph output that the next replay had overwritten;
docs/performance.md.) The first step of each compiled case compiles (its
time is printed); ops and syncs are not counted for compiled cases (a dispatch mode would
bypass the compiled graph).

``--cuda-graphs`` adds, on a GPU, every strategy again with the step's forward and backward
passes replayed from a CUDA graph (``nestdsl train --cuda-graphs``, ``GraphedSteps``),
labelled ``osgd+graphs``; its ops and syncs are those the host still dispatches (the eager
rest of the step: the coefficients, the write, the optimizer).

``--per-layer`` adds, off the CPU, every eager case again with each layer assembling its own
weights instead of the weight bank's one gather (``compiler.assembly``), labelled
``sgd+layers``: what the bank saves, measured side by side.

With ``--device cuda`` the step runs under bf16 autocast (fp16 + GradScaler before Ampere)
on channels_last tensors, as ``nestdsl train`` does there.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import nestdsl
from nestdsl.compiler.assembly import PER_LAYER_DEVICES
from nestdsl.optim.stage_grads import ONE_PASS
from nestdsl.profiling import DispatchCounter
from nestdsl.train.batch_step import (
    FORWARDS,
    StepPlan,
    backward_step,
    finish_step,
    mode_of,
    train_step,
)
from nestdsl.train.compiled import compiling
from nestdsl.train.config import make_config
from nestdsl.train.devices import Runtime, cuda_capability
from nestdsl.train.graphed import WARMUP, GraphedSteps

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = [
    "specs/digits_width.nest",
    "specs/digits_depth.nest",
    "specs/digits_width_depth.nest",
    "specs/resnet42_width.nest",
    "specs/sparse_resnet98_depth.nest",
    "specs/sparse_resnet98_simultaneous.nest",
    "specs/sparse_resnet98_eann.nest",
]


@dataclass
class Case:
    """One strategy's step on one network, and the bare passes it cannot avoid."""

    strategy: str
    label: str
    step: Callable[[], None]
    bare: Callable[[], None]
    compiled: bool = False
    warmup: int = 0
    """Steps before the timed ones beyond the usual (``--cuda-graphs``: eager steps, then the
    capture)."""
    rest: Callable[[], int] | None = None
    """Ops the host dispatches after the step's recorded passes (``finish_step``): all that
    is left to it per step when ``--cuda-graphs`` replays the passes (eager cases only)."""


def runtime_for(device: torch.device) -> Runtime:
    if device.type != "cuda":
        return Runtime(device, None, channels_last=False)
    amp = torch.bfloat16 if cuda_capability(device) >= (8, 0) else torch.float16
    return Runtime(device, amp, channels_last=True)


def make_case(
    net: nestdsl.NestedNet,
    strategy: str,
    graph: str,
    x: torch.Tensor,
    y: torch.Tensor,
    runtime: Runtime,
    compiled: tuple[str, torch.nn.Module] | None = None,
    cuda_graphs: bool = False,
) -> Case:
    """The step and bare passes of ``strategy``; with ``compiled`` (a compile mode and the
    network compiled in it), run through the compiled network's joint pass; with
    ``cuda_graphs``, the step's passes replayed from a CUDA graph (``--cuda-graphs``)."""
    n = net.num_stages
    mode = mode_of(make_config(strategy=strategy, task_graph=graph), runtime.device.type)
    model = net if compiled is None else compiled[1]
    stages = [net.stage_parameters(k) for k in range(1, n + 1)]
    params = list(dict.fromkeys(net.parameters()))
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True)
    plan = StepPlan(mode, model, strategy, stages, optimizer, scaler=scaler, capture=net.bank)

    graphs = compiled is not None and compiled[0] == "reduce-overhead"
    run = GraphedSteps(plan, runtime) if cuda_graphs else partial(train_step, plan, runtime)

    def step() -> None:
        if graphs:  # a new step: the CUDA graphs may reuse the last step's output memory
            torch.compiler.cudagraph_mark_step_begin()
        run(x, y)

    def bare() -> None:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with runtime.autocast():
            outputs = FORWARDS[mode](model, x, n)
            losses = [torch.nn.functional.cross_entropy(o.float(), y) for o in outputs]
        if strategy in ONE_PASS:
            torch.autograd.backward(torch.stack(losses).mean(), inputs=params)
            return
        for i, loss in enumerate(losses):
            torch.autograd.grad(loss, stages[i], retain_graph=i < n - 1, allow_unused=True)

    label = strategy if strategy in ONE_PASS or graph == "auto" else f"{strategy}/{graph}"
    if compiled is not None:
        return Case(strategy, f"{label}+{compiled[0]}", step, bare, compiled=True)
    if cuda_graphs:
        return Case(strategy, f"{label}+graphs", step, bare, warmup=WARMUP + 1)

    def rest() -> int:
        backward = backward_step(plan, runtime, x, y)
        with DispatchCounter() as counter:
            finish_step(plan, backward)
        return counter.ops

    return Case(strategy, label, step, bare, rest=rest)


def per_layer(net: nestdsl.NestedNet, case: Case, device: torch.device) -> Case:
    """``case`` with each layer assembling its own weights (pads and concatenations) instead
    of the weight bank's one gather, the default on every device but the CPU."""

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with net.bank.gathering(False, device.type):
                fn()

        return run

    return Case(case.strategy, f"{case.label}+layers", wrap(case.step), wrap(case.bare))


def compiled_cases(
    net: nestdsl.NestedNet,
    strategies: list[tuple[str, str]],
    modes: list[str],
    x: torch.Tensor,
    y: torch.Tensor,
    runtime: Runtime,
) -> list[Case]:
    """One compiled case per compile mode and strategy whose forward is the joint pass (an
    anytime forward steps through ``net.anytime``, which ``torch.compile(net)`` leaves eager)."""
    joint = [
        (s, g)
        for s, g in strategies
        if mode_of(make_config(strategy=s, task_graph=g), runtime.device.type) == "joint"
    ]
    cases = []
    for mode in modes:
        model = torch.compile(net, mode=mode)
        cases += [make_case(net, s, g, x, y, runtime, (mode, model)) for s, g in joint]
    return cases


def ideal_ratio(net: nestdsl.NestedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """forward(D_n) + Σ_k backward(D_k) over forward + backward of D_n, in FLOPs without the
    pruned entries: what per-task gradients must cost at least, whichever path runs them."""
    n = net.num_stages
    stages = [net.stage_parameters(k) for k in range(1, n + 1)]

    def per_task() -> None:
        for i, out in enumerate(FORWARDS["anytime"](net, x, n)):
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            torch.autograd.grad(loss, stages[i], retain_graph=True, allow_unused=True)

    def joint() -> None:
        losses = [torch.nn.functional.cross_entropy(o.float(), y) for o in net(x)]
        torch.autograd.backward(torch.stack(losses).mean(), inputs=stages[-1])

    return flops(net, per_task) / flops(net, joint)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def flops(net: nestdsl.NestedNet, fn: Callable[[], None]) -> int:
    """FLOPs of ``fn`` with the pruned entries not counted (block-wise joint execution)."""
    previous = net.execution
    net.set_execution("blockwise")
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        net.set_execution(previous)
    return int(counter.get_total_flops())


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    return max(0, *itertools.accumulate(e.self_cpu_memory_usage for e in events))


def dispatched(fn: Callable[[], None], marked: list[torch.Tensor]) -> DispatchCounter:
    with DispatchCounter() as counter:
        counter.mark(*marked)
        fn()
    return counter


def compare(
    path: str,
    strategies: list[tuple[str, str]],
    batch: int,
    repeats: int,
    device: torch.device,
    compile_modes: list[str],
    layers: bool,
    cuda_graphs: bool,
) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(ROOT / path)).to(device).train()
    runtime = runtime_for(device)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = runtime.to_device(torch.randn(batch, *net.input_shape))
    y = torch.randint(0, net.num_classes, (batch,), device=device)
    cases = [make_case(net, s, graph, x, y, runtime) for s, graph in strategies]
    if layers and device.type not in PER_LAYER_DEVICES and net.bank.layers:
        cases += [per_layer(net, case, device) for case in list(cases)]
    cases += compiled_cases(net, strategies, compile_modes, x, y, runtime)
    if cuda_graphs and device.type == "cuda":  # on a copy: eager steps replace its gradients
        twin = nestdsl.compile(net.ir).to(device).train()
        twin.load_state_dict(net.state_dict())
        if runtime.channels_last:
            twin.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        cases += [make_case(twin, s, g, x, y, runtime, cuda_graphs=True) for s, g in strategies]
    for case in cases:  # warm-up: optimizer state, allocator, kernels (compiling, if compiled)
        for _ in range(case.warmup):
            case.step()
        first = timed(case.step, device)
        case.step(), case.bare()
        if case.compiled:
            print(f"  {case.label}: first step (compiling) {first:.1f} s", flush=True)
    times: dict[str, list[float]] = {case.label: [] for case in cases}
    bare_times: dict[str, list[float]] = {case.label: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            times[case.label].append(timed(case.step, device))
            bare_times[case.label].append(timed(case.bare, device))
    marked = [x, y, *net.parameters(), *net.buffers()]
    base = cases[0]
    base_time, ideal = statistics.median(times[base.label]), ideal_ratio(net, x, y)
    print(
        f"\n{net.ir.name} ({' '.join(net.stage_labels)}; "
        f"{len(list(net.parameters()))} parameter tensors), "
        f"batch {batch}, {device}" + (f", amp {runtime.amp_dtype}" if runtime.amp_dtype else "")
    )
    print(
        f"  {'strategy':16s} {'ms/step':>8s} {'vs ' + base.label:>8s} {'ideal':>6s} "
        f"{'x ideal':>7s} "
        f"{'bare ms':>8s} {'step/bare':>9s} "
        f"{'peak MiB':>9s} {'ops/step':>9s} {'bare ops':>9s} {'ratio':>6s} {'syncs':>6s} "
        f"{'rest ops':>9s}"
    )
    for case in cases:
        median = statistics.median(times[case.label])
        bare = statistics.median(bare_times[case.label])
        floor = 1.0 if case.strategy in ONE_PASS else ideal
        print(
            f"  {case.label:16s} {median * 1e3:8.1f} {median / base_time:8.2f} "
            f"{floor:6.2f} {median / base_time / floor:7.2f} "
            f"{bare * 1e3:8.1f} {median / bare:9.2f} "
            f"{peak_bytes(case.step, device) / 2**20:9.1f} {counts(case, marked)}"
        )


def counts(case: Case, marked: list[torch.Tensor]) -> str:
    """Ops per step, per bare passes, their ratio, syncs per step and the ops left to the host
    when the passes are replayed (not for compiled cases)."""
    if case.compiled:
        return f"{'-':>9s} {'-':>9s} {'-':>6s} {'-':>6s} {'-':>9s}"
    step_ops = dispatched(case.step, marked)
    bare_ops = dispatched(case.bare, marked)
    rest = f"{case.rest():9d}" if case.rest is not None else f"{'-':>9s}"
    return (
        f"{step_ops.ops:9d} {bare_ops.ops:9d} {step_ops.ops / bare_ops.ops:6.2f} "
        f"{step_ops.syncs:6d} {rest}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--strategies", default="sgd,sgd-norm,osgd,osgd-norm")
    parser.add_argument("--task-graphs", default="auto", help="e.g. anytime,joint")
    parser.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    parser.add_argument(
        "--compile",
        default="",
        metavar="MODES",
        help="also time joint-pass steps compiled by torch.compile in these modes, "
        "e.g. default,reduce-overhead",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="also time every strategy with its passes replayed from a CUDA graph (on a GPU)",
    )
    parser.add_argument(
        "--per-layer",
        action="store_true",
        help="also time every eager case with per-layer weight assembly (off the CPU)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    strategies = args.strategies.split(",")
    if strategies[0] != "sgd":
        strategies = ["sgd", *(s for s in strategies if s != "sgd")]
    graphs = args.task_graphs.split(",")
    runs = [(s, g) for s in strategies for g in (["auto"] if s in ONE_PASS else graphs)]
    modes = [m for m in args.compile.split(",") if m]
    with compiling(bool(modes)):  # the settings `nestdsl train --torch-compile` runs under
        for path in args.specs:
            device = torch.device(args.device)
            compare(
                path,
                runs,
                args.batch,
                args.repeats,
                device,
                modes,
                args.per_layer,
                args.cuda_graphs,
            )


if __name__ == "__main__":
    main()
