"""Run-time simulation under deadlines (the paper's Section 5.4, Figure 10).

Four schemes answer every test input by a deadline ``d``:

- **Nested** / **Baseline**: an anytime network (a nested design, or EANN / even width) runs
  its stages in order; the answer is the last stage finished by ``d``.
- **Oracle_All**: of the independent networks (the Oracles of the nested design's stages), the
  most accurate one that finishes by ``d`` for *all* inputs answers every input.
- **Oracle_Each**: per input, the most accurate independent network that finishes by ``d``
  for *that* input (impossible in practice: it needs each input's latency in advance).

With no output by ``d`` the answer is a random guess, counted at its expected accuracy
``1 / classes``. "Most accurate" is judged on the validation split; errors are counted on the
test split. Latencies are *measured* (batch 1, :func:`nestdsl.evaluate.stage_latencies`,
stages on cached state, so stage k's time is that of stages 1..k) and every input gets one
repeat drawn at random from those measurements, so the per-input latencies follow the measured
distribution. Deadlines are 0.5x to 1x (7 steps) of the mean latency of the largest Oracle, the
biggest network of the comparison, plus no deadline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nestdsl.diagnostics import fail
from nestdsl.experiment.tables import RunRecord

SCHEMES = ("Baseline", "Nested", "Oracle_All", "Oracle_Each")
LARGEST_BATCH = 1 << 20
"""Batch size that holds a whole test split (the digits' 359 images), one forward pass."""
FACTORS = tuple(0.5 + i / 12 for i in range(7))
"""The paper's 7 deadlines, 0.5x to 1x of the largest network's mean latency."""


@dataclass(frozen=True)
class Network:
    """One trained network as the simulation sees it.

    ``correct[k, i]``: whether output k is right on test input i; ``val_error[k]``: output k's
    validation error (what choices look at); ``finish_ms[r, k]``: measured time until output k
    is ready, in repeat r (cumulative over stages); ``classes`` for the random guess.
    """

    correct: np.ndarray
    val_error: tuple[float, ...]
    finish_ms: np.ndarray
    classes: int


def measure(run: RunRecord, *, repeats: int = 30, warmup: int = 3) -> Network:
    """Load a finished run, predict the test split, time its stages at batch 1."""
    import torch
    from torch.utils.data import DataLoader

    from nestdsl.compiler.network import NestedNet
    from nestdsl.data import build_datasets
    from nestdsl.evaluate import cumulative, stage_latencies, stage_outputs
    from nestdsl.trained import load_run

    trained = load_run(run.path)
    net = trained.net
    if not isinstance(net, NestedNet):
        fail("E937", f"the run in {run.path} is not a compiled nestdsl network")
    data = build_datasets(trained.config.data, net.input_shape, augment=False)
    whole = DataLoader(data.test, batch_size=LARGEST_BATCH)
    images, labels = next(iter(whole))  # [N, C, H, W], [N]
    with torch.no_grad():
        outputs = stage_outputs(net(images))  # n x [N, classes]
    correct = torch.stack([o.argmax(dim=1) == labels for o in outputs]).numpy()  # [n, N]
    times = cumulative(stage_latencies(net, images[:1], repeats=repeats, warmup=warmup))
    finish = np.array([t.samples_ms for t in times]).T  # [repeats, n]
    return Network(correct, run.val_errors, finish, data.num_classes)


def anytime_correct(net: Network, draws: np.ndarray, deadline: float) -> np.ndarray:
    """Expected correctness per input: the last stage finished by ``deadline``, else a guess."""
    finish = net.finish_ms[draws]  # [N, n]
    done = (finish <= deadline).sum(axis=1)  # stages finished per input, [N]
    guess = 1.0 / net.classes
    picked = net.correct[np.maximum(done - 1, 0), np.arange(len(draws))]
    return np.where(done > 0, picked.astype(float), guess)


def oracle_all(nets: Sequence[Network], draws: np.ndarray, deadline: float) -> np.ndarray:
    """One network for every input: the most accurate (validation) finishing for all inputs."""
    fits = [n for n, d in zip(nets, draws, strict=True) if n.finish_ms[d, -1].max() <= deadline]
    if not fits:
        return np.full(draws.shape[1], 1.0 / nets[0].classes)
    best = min(fits, key=lambda n: n.val_error[-1])
    return best.correct[-1].astype(float)


def oracle_each(nets: Sequence[Network], draws: np.ndarray, deadline: float) -> np.ndarray:
    """Per input, the most accurate (validation) network that finishes for that input."""
    order = sorted(range(len(nets)), key=lambda k: nets[k].val_error[-1])
    result = np.full(draws.shape[1], 1.0 / nets[0].classes)
    open_ = np.ones(draws.shape[1], dtype=bool)
    for k in order:
        fits = open_ & (nets[k].finish_ms[draws[k], -1] <= deadline)
        result[fits] = nets[k].correct[-1][fits]
        open_ &= ~fits
    return result


@dataclass(frozen=True)
class Simulation:
    """Error (%) per scheme and deadline: ``errors[scheme][j]`` at ``deadlines_ms[j]``
    (``None`` as the last deadline: no deadline), mean and std over seeds."""

    deadlines_ms: tuple[float | None, ...]
    errors: dict[str, tuple[tuple[float, float], ...]]
    reference_ms: float


Group = tuple[Network | None, Network, list[Network]]
"""(baseline or None, nested, the Oracles in stage order) of one seed."""


def simulate(groups: Sequence[Group], *, seed: int = 0) -> Simulation:
    """Run the four schemes at every deadline for each seed's group; mean and std over seeds."""
    reference = statistics.fmean(
        float(np.mean(oracles[-1].finish_ms[:, -1])) for _, _, oracles in groups
    )
    deadlines: list[float | None] = [f * reference for f in FACTORS] + [None]
    rows: dict[str, list[list[float]]] = {s: [[] for _ in deadlines] for s in SCHEMES}
    rng = np.random.default_rng(seed)
    for baseline, nested, oracles in groups:
        count = nested.correct.shape[1]
        schemes = {"Baseline": baseline, "Nested": nested}
        for j, deadline in enumerate(deadlines):
            limit = np.inf if deadline is None else deadline
            for name, net in schemes.items():
                if net is not None:
                    draws: np.ndarray = rng.integers(len(net.finish_ms), size=(count,))
                    rows[name][j].append(100 * (1 - anytime_correct(net, draws, limit).mean()))
            per_net = np.stack([rng.integers(len(n.finish_ms), size=count) for n in oracles])
            for name, scheme in (("Oracle_All", oracle_all), ("Oracle_Each", oracle_each)):
                rows[name][j].append(100 * (1 - scheme(oracles, per_net, limit).mean()))
    errors = {
        name: tuple(_mean_std(values) for values in per_deadline)
        for name, per_deadline in rows.items()
        if per_deadline[0]
    }
    return Simulation(tuple(deadlines), errors, reference)


def _mean_std(values: list[float]) -> tuple[float, float]:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), std


def deadline_groups(
    runs: Sequence[RunRecord], nested: str, baseline: str | None, strategy: str = "osgd"
) -> list[Group]:
    """Measure, seed by seed, the nested spec's and the baseline's ``strategy`` runs and the
    nested spec's Oracles (only seeds that have all of them; none: an empty list)."""

    def pick(spec: str, variant: str, seed: int) -> RunRecord | None:
        found = [r for r in runs if r.spec == spec and r.variant == variant and r.seed == seed]
        return found[0] if found else None

    stages = len(next((r.labels for r in runs if r.spec == nested and r.kind == "anytime"), ()))
    groups: list[Group] = []
    for seed in sorted({r.seed for r in runs if r.spec == nested}):
        main = pick(nested, strategy, seed)
        base = pick(baseline, strategy, seed) if baseline else None
        oracles = [pick(nested, f"oracle{k}", seed) for k in range(1, stages + 1)]
        if main is None or (baseline and base is None) or None in oracles or not oracles:
            continue
        groups.append(
            (
                measure(base) if base else None,
                measure(main),
                [measure(o) for o in oracles if o is not None],
            )
        )
    return groups


def deadline_table(sim: Simulation) -> str:
    """Markdown: one row per deadline, one column per scheme, error % mean (std) over seeds."""
    schemes = [s for s in SCHEMES if s in sim.errors]
    lines = [
        "| deadline | " + " | ".join(schemes) + " |",
        "|---|" + "---:|" * len(schemes),
    ]
    for j, deadline in enumerate(sim.deadlines_ms):
        if deadline is None:
            name = "none"
        else:
            name = f"{deadline / sim.reference_ms:.2f}x ({deadline:.2f} ms)"
        cells = [_cell(*sim.errors[s][j]) for s in schemes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(mean: float, std: float) -> str:
    return f"{mean:.1f}" if np.isnan(std) else f"{mean:.1f} ({std:.1f})"


def plot_deadlines(sim: Simulation, path: Path, title: str) -> None:
    """Grouped bars: error per scheme at each deadline (Figure 10's form)."""
    from nestdsl.experiment.plots import check_output, new_figure, save_figure

    check_output(path)
    figure, axes = new_figure()
    schemes = [s for s in SCHEMES if s in sim.errors]
    width = 0.8 / len(schemes)
    positions = np.arange(len(sim.deadlines_ms))
    for index, scheme in enumerate(schemes):
        means = [m for m, _ in sim.errors[scheme]]
        stds = [0.0 if np.isnan(s) else s for _, s in sim.errors[scheme]]
        axes.bar(positions + index * width, means, width, yerr=stds, label=scheme, capsize=2)
    names = ["none" if d is None else f"{d / sim.reference_ms:.2f}x" for d in sim.deadlines_ms]
    axes.set_xticks(positions + width * (len(schemes) - 1) / 2, names)
    axes.set_xlabel(f"deadline (x mean latency of the largest network, {sim.reference_ms:.2f} ms)")
    axes.set_ylabel("top-1 test error (%)")
    axes.set_title(title)
    axes.legend(fontsize="small")
    save_figure(figure, path)
