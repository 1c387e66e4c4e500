"""Benchmark: training throughput end to end (data loading included), per strategy.

For each spec and data source, one training epoch (the training loader, the steps as the
engine takes them; no validation) per strategy and loader setting, interleaved round by round so
that machine noise hits all alike. Prints the median images per second and the fraction of the
epoch spent waiting for the loader (time in ``next()`` of its iterator, worker start-up
included, as every epoch pays it).

The default cases are the embedded digits (16×16, random shifts) and CIFAR-size synthetic
data (3×32×32) on ``digits_width`` with its input widened to 3×32×32, a network small enough
for a shared 2-core machine; give ``--case SPEC=DATA`` for others (e.g.
``specs/resnet42_width.nest=synthetic:4096``).

    python bench/throughput.py [--case SPEC=DATA ...] [--strategies sgd,osgd]
        [--workers 0,2] [--batch 64] [--repeats 5] [--device cuda] [--cuda-graphs]

``--cuda-graphs`` (on a GPU) runs every setting again with the trainer's ``--cuda-graphs``
steps (``nestdsl.train.graphed.GraphedSteps``), labelled ``osgd+graphs``.

Every setting runs with the same intra-op threads (``--threads``, default: the thread budget
of the setting with the most loader workers, `nestdsl.train.devices.thread_budget`), so that
the settings differ only in how batches are loaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

import nestdsl
from nestdsl.data import build_datasets
from nestdsl.train.batch_step import StepPlan, mode_of
from nestdsl.train.config import TrainConfig
from nestdsl.train.devices import Runtime, resolve_runtime, thread_budget
from nestdsl.train.distributed import DistContext
from nestdsl.train.engine import loss_memberships
from nestdsl.train.graphed import Step, stepper
from nestdsl.train.loaders import EpochLoaders

ROOT = Path(__file__).resolve().parent.parent
CIFAR_SIZE = "cifar-size"
"""Pseudo spec name: `digits_width` with a 3×32×32 input (same layers, CIFAR-size images)."""
DEFAULT_CASES = ["specs/digits_width_depth.nest=digits", f"{CIFAR_SIZE}=synthetic:2048"]


@dataclass
class Epoch:
    """What one epoch took: wall time, time waiting for batches, images seen."""

    seconds: float
    loading: float
    images: int


def network(spec: str) -> nestdsl.NestedNet:
    torch.manual_seed(0)
    if spec == CIFAR_SIZE:
        text = (ROOT / "specs/digits_width.nest").read_text()
        text = text.replace("shape=(1, 16, 16)", "shape=(3, 32, 32)")
        return nestdsl.compile(nestdsl.loads(text))
    return nestdsl.compile(nestdsl.load(ROOT / spec))


def timed_batches(loader: object) -> Iterator[tuple[float, tuple[torch.Tensor, torch.Tensor]]]:
    """Each batch with the seconds spent waiting for it (iterator creation included)."""
    start = time.perf_counter()
    iterator = iter(loader)  # type: ignore[call-overload]
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - start, batch
        start = time.perf_counter()


def epoch(steps: Step, runtime: Runtime, loaders: EpochLoaders, number: int) -> Epoch:
    loaders.start_epoch(number)
    loading, images = 0.0, 0
    start = time.perf_counter()
    for waited, (x, y) in timed_batches(loaders.train):
        loading += waited
        x = runtime.to_device(x)
        y = y.to(runtime.device, non_blocking=runtime.pin_memory)
        losses = steps(x, y)
        images += int(y.shape[0])
    if runtime.device.type == "cuda":
        float(losses[-1])  # wait for the queued kernels
    return Epoch(time.perf_counter() - start, loading, images)


def make_plan(net: nestdsl.NestedNet, config: TrainConfig, device: str) -> StepPlan:
    """The step the trainer would run on ``device`` (a device type), task graph included."""
    params = list(dict.fromkeys(net.parameters()))
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    mode = mode_of(config, device)
    return StepPlan(mode, net, config.strategy, loss_memberships(net), optimizer, capture=net.bank)


def compare(case: str, strategies: list[str], workers: list[int], args: argparse.Namespace) -> None:
    spec, data_source = case.split("=", 1)
    base = TrainConfig(data=data_source, batch_size=args.batch, device=args.device)
    runtime = resolve_runtime(base)
    graphs = [False, True] if args.cuda_graphs and runtime.device.type == "cuda" else [False]
    nets = {g: network(spec).to(runtime.device).train() for g in graphs}  # one per way to step
    for net in nets.values():
        if runtime.channels_last:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net = nets[False]
    data = build_datasets(data_source, net.input_shape, augment=True, seed=0)
    settings = [(s, g, w) for s in strategies for g in graphs for w in workers]
    steps = {
        (s, g): stepper(
            make_plan(nets[g], base.model_copy(update={"strategy": s}), runtime.device.type),
            runtime,
            g,
        )
        for s in strategies
        for g in graphs
    }
    loaders = {
        w: EpochLoaders(
            data.train,
            data.val,
            batch_size=args.batch,
            seed=0,
            workers=w,
            pin_memory=runtime.pin_memory,
            context=DistContext(),
        )
        for w in workers
    }
    results: dict[tuple[str, bool, int], list[Epoch]] = {key: [] for key in settings}
    for number in range(args.repeats + 1):  # the first round warms up and is dropped
        for strategy, g, w in settings:
            result = epoch(steps[(strategy, g)], runtime, loaders[w], number)
            if number:
                results[(strategy, g, w)].append(result)
    print(
        f"\n{spec} on {data_source} ({len(data.train)} training images, input "  # type: ignore[arg-type]
        f"{'x'.join(map(str, net.input_shape))}), batch {args.batch}, {runtime.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  {'strategy':14s} {'workers':>7s} {'images/s':>9s} {'loader':>7s}")
    for strategy, g, w in settings:
        epochs = results[(strategy, g, w)]
        rate = statistics.median(e.images / e.seconds for e in epochs)
        share = statistics.median(e.loading / e.seconds for e in epochs)
        label = f"{strategy}+graphs" if g else strategy
        print(f"  {label:14s} {w:7d} {rate:9.0f} {share:7.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--case", action="append", help="SPEC=DATA (repeatable)")
    parser.add_argument("--strategies", default="sgd,osgd")
    parser.add_argument("--workers", default="0,2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="intra-op CPU threads (default: budget)")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on a GPU, also run every setting with --cuda-graphs' replayed steps",
    )
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    workers = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(args.threads or thread_budget(1, max(workers)))
    for case in args.case or DEFAULT_CASES:
        compare(case, strategies, workers, args)


if __name__ == "__main__":
    main()
