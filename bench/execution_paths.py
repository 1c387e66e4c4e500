"""Benchmark: every execution path of a compiled spec side by side, against issue 13's targets.

Paths (medians over repeats; within a repeat every path runs once, in a rotating order, so
that noise on a shared machine hits them alike):

- train steps (forward + backward of every stage's loss; for nestdsl's network the step
  ``nestdsl train --strategy sgd`` runs: ``fill_grad`` after the joint pass, the weight bank's
  gradient captured, see ``training_step``): joint execution with the dense
  weight, block-wise (one convolution per stripe, no pruned zeros), ``auto`` (the per-layer
  choice the compiler makes), ``auto`` with the other way of assembling weights than the
  device's default (the weight bank's one gather on a CPU, per-layer assembly on a GPU), and
  a hand-written dense PyTorch model of D_n where the spec is a plain residual network
  (``joint_vs_handwritten.HandWritten``);
- inference: joint ``dense`` / ``blockwise`` / ``auto`` (and ``auto`` with the other
  assembly), anytime execution of all stages, the first anytime output alone, and
  ``subnetwork(1)`` alone;
- on a CUDA device, the inference paths replayed from CUDA graphs: the joint pass
  (``auto``) and ``subnetwork(1)`` each captured as one graph, anytime execution as one graph
  per stage (``nestdsl.evaluate.graphs.GraphedAnytime``); and the joint ``auto`` and
  hand-written train steps, each captured whole as one graph, so that the train target can be
  read without the launches (against the graphed and the eager hand-written step);
- with ``--torch-compile``, the same inference paths compiled by ``torch.compile``
  (inductor): the joint pass (``auto``), anytime execution with one compiled graph per stage
  (``torch.compile(net.advance)``, so each stage's output is still returned before the next
  stage runs), and ``subnetwork(1)``; each path's compile time is printed.

Beside each median: the aten ops and the convolutions (forward and backward) one run of the
path dispatches, counted by ``nestdsl.profiling.DispatchCounter``. Targets printed beside the
ratios: joint train step <= 0.9x hand-written D_n where the kept
FLOPs are <= 0.75x the dense ones; anytime all stages <= 1.05x a joint pass; first output
<= 1.2x ``subnetwork(1)``; on tiny specs no path slower than 1.2x the best of its kind.

    python bench/execution_paths.py [SPEC ...] [--batch 16] [--repeats 9] [--threads N]
        [--device cuda] [--torch-compile]

On a GPU every path runs in float32 on the device (TF32 as PyTorch's defaults allow), so the
ratios compare the execution paths themselves, not precisions.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from joint_vs_handwritten import HandWritten, infer_step, timed, train_step
from torch import nn

import nestdsl
from nestdsl.compiler.assembly import PER_LAYER_DEVICES
from nestdsl.cost import stage_costs, unit_flops
from nestdsl.evaluate.graphs import GraphedAnytime, GraphedCall
from nestdsl.evaluate.latency import Stages
from nestdsl.ir.model import NestIR
from nestdsl.optim import fill_grad
from nestdsl.profiling import DispatchCounter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = [
    "specs/digits_width.nest",
    "specs/digits_width_depth.nest",
    "specs/resnet42_width.nest",
    "specs/sparse_resnet98_depth.nest",
    "specs/sparse_resnet98_alternating.nest",
]
TINY_MACS = 50e6
"""Specs below this many multiply-accumulates per image count as tiny (the digits ones)."""


@dataclass(frozen=True)
class Path_:
    """One thing to time: its group (train / inference), name and the step to run."""

    group: str
    name: str
    step: Callable[[], None]


def dense_macs(ir: NestIR) -> int:
    """MACs per image of joint execution with dense weights (pruned entries multiplied)."""
    total = 0
    for layer in ir.layers.values():
        if layer.op == "conv":
            per_out = ir.in_channels(layer) // layer.groups * layer.kernel**2
            total += layer.size[0] * layer.size[1] * layer.channels * per_out
        elif layer.op == "head":
            total += unit_flops(ir, (layer.id, 0))
    return total


def kept_macs(ir: NestIR) -> int:
    """MACs per image of D_n without its pruned entries, plus every head."""
    costs = stage_costs(ir)
    return sum(cost.incremental_flops for cost in costs)


def anytime_stages(
    net: Stages, x: torch.Tensor, stages: int, advance: Callable | None = None
) -> Callable[[], None]:
    """The first ``stages`` stages of ``net`` (a network, or its stages replayed from CUDA
    graphs), one output at a time, by ``advance`` (default ``net.advance``; the compiled
    paths pass ``torch.compile(net.advance)``)."""
    run = advance or net.advance

    def step() -> None:
        with torch.no_grad():
            state = net.start(x)
            for _ in range(stages):
                run(state)

    return step


def copies_of(
    net: nestdsl.NestedNet, device: torch.device, count: int, *, training: bool = False
) -> list[nestdsl.NestedNet]:
    """``count`` copies of ``net`` (same weights, on ``device``, eval mode unless
    ``training``), so that paths switching execution modes never meet a compiled or captured
    one."""
    copies = []
    for _ in range(count):
        copy = nestdsl.compile(net.ir).train(training).to(device)
        copy.load_state_dict(net.state_dict())
        copies.append(copy)
    return copies


def compiled_paths(net: nestdsl.NestedNet, x: torch.Tensor) -> list[Path_]:
    """The inference paths compiled by ``torch.compile``, each on its own copy of ``net`` (so
    that other paths switching execution modes never invalidate a compiled graph), compiled
    before timing; prints each compile time."""
    joint, stepped = copies_of(net, x.device, 2)
    sub = net.subnetwork(1).eval().to(x.device)
    advance, n = torch.compile(stepped.advance), net.num_stages
    result = [
        Path_("compiled", "joint auto", infer_step(torch.compile(joint), x)),
        Path_("compiled", "anytime, all stages", anytime_stages(stepped, x, n, advance)),
        Path_("compiled first", "anytime, first output", anytime_stages(stepped, x, 1, advance)),
        Path_("compiled first", "subnetwork(1) alone", infer_step(torch.compile(sub), x)),
    ]
    for item in result:
        start = time.perf_counter()
        item.step()
        seconds = time.perf_counter() - start
        print(f"  torch.compile: {item.group}: {item.name}: first run {seconds:.1f} s")
    return result


def with_execution(
    net: nestdsl.NestedNet, execution: str, step: Callable[[], None]
) -> Callable[[], None]:
    def run() -> None:
        net.set_execution(execution)  # type: ignore[arg-type]
        step()

    return run


def with_assembly(
    net: nestdsl.NestedNet, gather: bool, device: torch.device, step: Callable[[], None]
) -> Callable[[], None]:
    """``step`` with every layer's pieces gathered by the weight bank (``gather``) or built
    layer by layer, whichever the device does not do by default."""

    def run() -> None:
        with net.bank.gathering(gather, device.type):
            step()

    return run


def training_step(net: nestdsl.NestedNet, x: torch.Tensor) -> Callable[[], None]:
    """Training's joint step with ``sgd``: every stage's loss from one joint pass, then
    ``fill_grad`` (one backward, the weight bank's gradient captured where it gathers)."""
    stages = [net.stage_parameters(k) for k in range(1, net.num_stages + 1)]

    def step() -> None:
        losses = [out.float().logsumexp(1).mean() for out in net(x)]
        fill_grad(losses, stages, "sgd", capture=net.bank)

    return step


def assembly_paths(
    net: nestdsl.NestedNet, evaluated: nestdsl.NestedNet, x: torch.Tensor
) -> list[Path_]:
    """The joint ``auto`` paths with the other way of assembling weights than the device's
    default (``compiler.assembly``): the weight bank on a CPU, per-layer assembly elsewhere."""
    gather = x.device.type in PER_LAYER_DEVICES
    name = "joint auto, weight bank" if gather else "joint auto, per-layer assembly"
    train = with_execution(net, "auto", training_step(net, x))
    infer = with_execution(evaluated, "auto", infer_step(evaluated, x))
    return [
        Path_("train", name, with_assembly(net, gather, x.device, train)),
        Path_("infer", name, with_assembly(evaluated, gather, x.device, infer)),
    ]


def paths(
    spec_path: str, batch: int, device: torch.device, compiled: bool
) -> tuple[nestdsl.NestedNet, list[Path_]]:
    spec = nestdsl.load(ROOT / spec_path)
    torch.manual_seed(0)
    net = nestdsl.compile(spec).train()
    c, h, w = net.input_shape
    x = torch.randn(batch, c, h, w, device=device)
    sub = net.subnetwork(1).eval().to(device)
    evaluated = nestdsl.compile(net.ir).eval()
    evaluated.load_state_dict(net.state_dict())
    net.to(device), evaluated.to(device)
    result = [
        Path_("train", f"joint {mode}", with_execution(net, mode, training_step(net, x)))
        for mode in ("dense", "blockwise", "auto")
    ]
    assembly = assembly_paths(net, evaluated, x) if net.bank.layers else []
    result += assembly[:1]
    hand: nn.Module | None = None
    try:
        hand = HandWritten(spec, net.num_stages).train().to(device)
        result.append(Path_("train", "hand-written D_n", train_step(hand, x)))
    except SystemExit:  # not a plain residual network
        pass
    result += [
        Path_("infer", f"joint {mode}", with_execution(evaluated, mode, infer_step(evaluated, x)))
        for mode in ("dense", "blockwise", "auto")
    ]
    result += assembly[1:]
    result += [
        Path_("infer", "anytime, all stages", anytime_stages(evaluated, x, net.num_stages)),
        Path_("first", "anytime, first output", anytime_stages(evaluated, x, 1)),
        Path_("first", "subnetwork(1) alone", infer_step(sub, x)),
    ]
    if device.type == "cuda":
        result += graphed_train_paths(net, hand, x)
        result += graphed_paths(evaluated, x)
    if compiled:
        result += compiled_paths(evaluated, x)
    return net, result


def graphed_call(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """``module(x)`` captured as one CUDA graph (``GraphedCall``); the step copies ``x`` into
    the captured input and replays, as a server would per batch."""
    graphed = GraphedCall(module, x)

    def step() -> None:
        graphed(x)

    return step


def graphed_train_paths(
    net: nestdsl.NestedNet, hand: nn.Module | None, x: torch.Tensor
) -> list[Path_]:
    """The joint ``auto`` and the hand-written train steps, each captured whole as one CUDA
    graph (``nestdsl train --cuda-graphs`` records the same passes), on copies of the two
    networks (a capture must never meet another path's execution mode): the comparison
    without the launches that dominate eager steps on a GPU."""
    (nested,) = copies_of(net, x.device, 1, training=True)
    nested.set_execution("auto")
    result = [Path_("graphed train", "joint auto", graphed_function(training_step(nested, x)))]
    if hand is not None:
        step = graphed_function(train_step(copy.deepcopy(hand), x))
        result.append(Path_("graphed train", "hand-written D_n", step))
    return result


def graphed_function(fn: Callable[[], None], warmup: int = 3) -> Callable[[], None]:
    """``fn`` (which reads fixed inputs) recorded as one CUDA graph after ``warmup`` runs on a
    side stream; the step replays it."""
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    current.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def graphed_paths(net: nestdsl.NestedNet, x: torch.Tensor) -> list[Path_]:
    """The inference paths replayed from CUDA graphs, each captured on its own copy of
    ``net`` (so that other paths switching execution modes never meet a captured one)."""
    joint, stepped = copies_of(net, x.device, 2)
    graphed = GraphedAnytime(stepped, x)
    sub = net.subnetwork(1).eval().to(x.device)
    return [
        Path_("graphed", "joint auto", graphed_call(joint, x)),
        Path_("graphed", "anytime, all stages", anytime_stages(graphed, x, net.num_stages)),
        Path_("graphed first", "anytime, first output", anytime_stages(graphed, x, 1)),
        Path_("graphed first", "subnetwork(1) alone", graphed_call(sub, x)),
    ]


@dataclass(frozen=True)
class Dispatched:
    """What one run of a path dispatches: every aten op, and the convolutions among them
    (forward and backward), the kernels whose fixed cost dominates the tiny specs."""

    ops: int
    convolutions: int


def dispatched(items: list[Path_]) -> dict[str, Dispatched]:
    """One counted run per path (after the timings, so counting never slows a timed run)."""
    counts = {}
    for item in items:
        if item.group.startswith(("compiled", "graphed")):  # kernels, not aten ops
            continue
        with DispatchCounter() as counter:
            item.step()
        convolutions = sum(n for op, n in counter.by_op.items() if "convolution" in op)
        counts[f"{item.group}: {item.name}"] = Dispatched(counter.ops, convolutions)
    return counts


def measure(items: list[Path_], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Milliseconds per path and repeat; each repeat runs every path once, order rotating."""
    for item in items:  # warm-up (and one-time planning)
        item.step()
    times: dict[str, list[float]] = {f"{i.group}: {i.name}": [] for i in items}
    for r in range(repeats):
        shift = r % len(items)
        for item in items[shift:] + items[:shift]:
            times[f"{item.group}: {item.name}"].append(timed(item.step, device) * 1e3)
    return times


DEFAULT_PATHS = ("train: joint auto", "infer: joint auto", "infer: anytime, all stages")
"""What a user gets without forcing an execution mode (the others are for comparison)."""


def path_checks(
    ms: dict[str, float], group: str, first: str, label: str, anytime_target: float
) -> list[tuple[str, float, float]]:
    """Anytime-all against the joint pass in ``group``, and the first output against
    ``subnetwork(1)`` in ``first`` (eager, compiled or graphed paths)."""
    return [
        (
            f"{label}anytime all / joint auto",
            ms[f"{group}: anytime, all stages"] / ms[f"{group}: joint auto"],
            anytime_target,
        ),
        (
            f"{label}first output / subnetwork(1)",
            ms[f"{first}: anytime, first output"] / ms[f"{first}: subnetwork(1) alone"],
            1.2,
        ),
    ]


def targets(ms: dict[str, float], kept_share: float, tiny: bool) -> list[tuple[str, float, float]]:
    """(what, ratio, target) for each of issue 13's item-1 targets that applies."""
    checks = path_checks(ms, "infer", "first", "", 1.05)
    if "compiled: joint auto" in ms:
        checks += path_checks(ms, "compiled", "compiled first", "compiled: ", 1.2 if tiny else 1.05)
    if "graphed: joint auto" in ms:
        graphed = path_checks(ms, "graphed", "graphed first", "graphed: ", 1.05)
        eager = ms["graphed: anytime, all stages"] / ms["infer: joint auto"]
        graphed.insert(1, ("graphed anytime all / eager joint auto", eager, 1.05))
        checks += graphed
    if "train: hand-written D_n" in ms and kept_share <= 0.75:
        hand = ms["train: hand-written D_n"]
        checks.insert(0, ("train auto / hand-written D_n", ms["train: joint auto"] / hand, 0.9))
        if "graphed train: hand-written D_n" in ms:
            graphed = ms["graphed train: joint auto"]
            checks[1:1] = [
                (
                    "graphed train / graphed hand-written",
                    graphed / ms["graphed train: hand-written D_n"],
                    0.9,
                ),
                ("graphed train / eager hand-written", graphed / hand, 0.9),
            ]
    if tiny:
        for group in ("train", "infer"):
            best = min(v for k, v in ms.items() if k.startswith(group))
            slowest = max(v for k, v in ms.items() if k in DEFAULT_PATHS and k.startswith(group))
            checks.append((f"tiny: default {group} path / best", slowest / best, 1.2))
    return checks


def report(
    net: nestdsl.NestedNet,
    times: dict[str, list[float]],
    counts: dict[str, Dispatched],
    batch: int,
    device: torch.device,
) -> None:
    """Medians (and minima: on a loaded machine short steps are often descheduled, which
    inflates medians but rarely minima), ratios to the best of each group, and targets."""
    ms = {key: statistics.median(values) for key, values in times.items()}
    dense, kept = dense_macs(net.ir), kept_macs(net.ir)
    tiny = dense < TINY_MACS
    print(
        f"\n{net.ir.name} ({' '.join(net.stage_labels)}), batch {batch}, {device}: kept/dense MACs "
        f"{kept / dense:.3f}, {dense / 1e6:.1f} M dense MACs per image{' (tiny)' if tiny else ''}"
    )
    for _, group in itertools.groupby(ms.items(), key=lambda kv: kv[0].split(":")[0]):
        rows = list(group)
        best = min(value for _, value in rows)
        for key, value in rows:
            count = counts.get(key)
            dispatch = (
                f"  {count.ops:6d} ops  {count.convolutions:4d} convolutions" if count else ""
            )
            print(
                f"  {key:40s} {value:10.2f} ms  {value / best:5.2f}x best"
                f"  (min {min(times[key]):8.2f} ms){dispatch}"
            )
    for name, ratio, target in targets(ms, kept / dense, tiny):
        verdict = "met" if ratio <= target else "NOT met"
        print(f"  {name:40s} {ratio:6.2f}  (target <= {target}: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op threads (0: torch's default)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time the inference paths compiled by torch.compile (inductor)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    for spec_path in args.specs:
        net, items = paths(spec_path, args.batch, device, args.torch_compile)
        times = measure(items, args.repeats, device)
        report(net, times, dispatched(items), args.batch, device)
    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
