"""Benchmark: the host time of a joint pass, nestdsl against a hand-written model.

A GPU step whose kernels are short is bound by the host: the time Python, the dispatcher and
autograd take to launch it. That time can be measured on any machine by making the kernels
negligible, so this benchmark runs a narrow copy of a plain residual spec (every channel
count divided by ``--divisor``, the input shrunk to ``--size`` pixels) at batch 1 on one CPU
thread, the way joint execution runs on a GPU: the dense weight for every layer (what the
CUDA cost table picks below 256 channels) and every piece gathered by the weight bank. It
alternates, in rotating order within each repeat:

- inference (no autograd), a training step (forward and backward of every stage's loss,
  gradients reset to None first), eager anytime inference of every stage, and the gradients
  of training's ``sgd`` and ``osgd`` steps (``fill_grad`` after a joint forward: one backward,
  or one per stage combined, with the bank's gradient captured as one flat vector, as
  training does; ``osgd uncaptured``: a gradient per parameter instead), of nestdsl's
  network;
- the same for the hand-written model of D_n (``joint_vs_handwritten.HandWritten``);
- ``WeightBank.assemble`` alone, the gather that the hand-written model does not need.

It prints medians and nestdsl / hand-written ratios. With ``--device cuda`` it runs the spec
at its own size on the GPU instead, the passes alternated the same way, and prints per model
and pass: the wall time, the host time (until the call returns), and the GPU's busy time
(CUDA kernels summed by ``torch.profiler`` over 3 more runs), so that one reads whether a
step is bound by the host or by the device.

    python bench/host_time.py [SPEC ...] [--divisor 16] [--size 8] [--repeats 41]
        [--device cuda] [--batch 128]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from joint_vs_handwritten import HandWritten
from torch import nn

import nestdsl
from nestdsl.ast import Spec
from nestdsl.diagnostics import NestError
from nestdsl.optim import fill_grad

ROOT = Path(__file__).resolve().parent.parent


def narrow(spec: Spec, divisor: int, size: int) -> Spec:
    """``spec`` with every channel count divided by ``divisor`` and ``size``×``size`` inputs."""
    shape = spec.input.model_copy(update={"height": size, "width": size})
    stem = spec.stem.model_copy(update={"channels": max(1, spec.stem.channels // divisor)})
    blocks = [b.model_copy(update={"channels": max(1, b.channels // divisor)}) for b in spec.blocks]
    return spec.model_copy(update={"input": shape, "stem": stem, "blocks": blocks})


def passes(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Inference and a training step of ``model`` on ``x``, and for nestdsl's network
    anytime inference of every stage (eager, stage by stage) and OSGD's gradients."""

    def infer() -> None:
        with torch.no_grad():
            model(x)

    def train() -> None:
        for p in model.parameters():
            p.grad = None
        loss = sum(out.float().logsumexp(1).mean() for out in model(x))
        loss.backward()  # type: ignore[union-attr]

    result = {"infer": infer, "train": train}
    if isinstance(model, nestdsl.NestedNet):

        def anytime() -> None:
            with torch.no_grad():
                for _ in model.anytime(x):
                    pass

        result["anytime"] = anytime
        stages = [model.stage_parameters(k) for k in range(1, model.num_stages + 1)]

        def combined(strategy: str, capture: bool = True) -> Callable[[], None]:
            def step() -> None:  # through the joint graph, as training's fill_grad does
                losses = [out.float().logsumexp(1).mean() for out in model(x)]
                fill_grad(losses, stages, strategy, capture=model.bank if capture else None)

            return step

        result["sgd"] = combined("sgd")
        result["osgd"] = combined("osgd")
        result["osgd uncaptured"] = combined("osgd", capture=False)
    return result


def models(spec: Spec) -> dict[str, nn.Module]:
    """nestdsl's network of ``spec``, and the hand-written model where the spec is a plain
    residual network (others have none)."""
    torch.manual_seed(0)
    net = nestdsl.compile(spec)
    try:
        return {"nestdsl": net, "hand-written": HandWritten(spec, net.num_stages)}
    except SystemExit:
        return {"nestdsl": net}


def host_cpu(spec: Spec, repeats: int) -> None:
    built = models(spec)
    net = built["nestdsl"]
    assert isinstance(net, nestdsl.NestedNet)
    net.set_execution("dense")
    x = torch.randn(1, spec.input.channels, spec.input.height, spec.input.width)
    steps = {
        f"{name} {kind}": step
        for name, model in built.items()
        for kind, step in passes(model, x).items()
    }
    steps["nestdsl WeightBank.assemble"] = lambda: net.bank.assemble("cpu")
    counts = ", ".join(f"{name} {len(list(m.parameters()))}" for name, m in built.items())
    print(
        f"{net.ir.name} / {spec.stem.channels} stem channels, {spec.input.height}x"
        f"{spec.input.width} input: parameter tensors {counts}; batch 1, "
        f"{torch.get_num_threads()} thread(s)"
    )
    with net.bank.gathering(True, "cpu"):
        times, _ = measure(steps, repeats, lambda: None)
    ms = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    for name, value in ms.items():
        print(f"  {name:32s} {value:8.3f} ms  (min {min(times[name]) * 1e3:8.3f})")
    for kind in ("infer", "train") if "hand-written" in built else ():
        ratio = ms[f"nestdsl {kind}"] / ms[f"hand-written {kind}"]
        print(f"  {kind}: nestdsl / hand-written       {ratio:8.2f}")
    for mine, theirs in (("osgd", "sgd"), ("osgd uncaptured", "osgd")):
        print(f"  {mine} / {theirs:24s} {ms[f'nestdsl {mine}'] / ms[f'nestdsl {theirs}']:8.2f}")


def measure(
    steps: dict[str, Callable[[], None]], repeats: int, synchronize: Callable[[], None]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per step and repeat, each repeat running every step once in rotating order:
    until the call returned (host), and until ``synchronize`` returned after it (wall)."""
    names = list(steps)
    for name in names:  # warm-up and one-time planning
        for _ in range(3):
            steps[name]()
    synchronize()
    walls: dict[str, list[float]] = {name: [] for name in names}
    hosts: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in itertools.chain(names[shift:], names[:shift]):
            start = time.perf_counter()
            steps[name]()
            launched = time.perf_counter()
            synchronize()
            walls[name].append(time.perf_counter() - start)
            hosts[name].append(launched - start)
    return walls, hosts


def host_cuda(spec: Spec, batch: int, repeats: int) -> None:
    built = {name: model.cuda() for name, model in models(spec).items()}
    x = torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width).cuda()
    print(f"{spec.name}, batch {batch}, {torch.cuda.get_device_name()}, float32")
    steps = {
        f"{name} {kind}": step
        for name, model in built.items()
        for kind, step in passes(model, x).items()
    }
    walls, hosts = measure(steps, repeats, torch.cuda.synchronize)
    for name, step in steps.items():
        wall, host = statistics.median(walls[name]), statistics.median(hosts[name])
        print(
            f"  {name:20s} wall {wall * 1e3:7.2f} ms  host {host * 1e3:7.2f} ms  "
            f"GPU busy {gpu_busy(step):7.2f} ms"
        )


def gpu_busy(step: Callable[[], None], runs: int = 3) -> float:
    """Milliseconds of CUDA kernels per run of ``step``, summed by ``torch.profiler``."""
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(runs):
            step()
        torch.cuda.synchronize()
    kernels = sum(event.self_device_time_total for event in profile.key_averages())
    return kernels / runs / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("specs", nargs="*", default=["specs/resnet42_width.nest"])
    parser.add_argument("--divisor", type=int, default=16)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--batch", type=int, default=128, help="with --device cuda")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for path in args.specs:
        spec = nestdsl.load(ROOT / path)
        if args.device.startswith("cuda"):
            host_cuda(spec, args.batch, args.repeats)
            continue
        torch.set_num_threads(1)
        try:
            host_cpu(narrow(spec, args.divisor, args.size), args.repeats)
        except NestError as error:  # e.g. stripes that no longer divide the channels
            reason = str(error).splitlines()[0]
            print(f"{path}: cannot narrow by {args.divisor} ({reason}); try --divisor 1")


if __name__ == "__main__":
    main()
