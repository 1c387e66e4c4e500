"""Accuracy–FLOPs curves (the paper's Figure 9) and priority-order curves (Figure 8).

Curves are computed from :class:`~nestdsl.experiment.tables.RunRecord`s, so they plot whatever
finished runs are given: each spec's anytime network under one strategy (the paper plots
OSGD), the baselines (specs grown by EANN's cascade or even widths) under the same strategy,
and each spec's Oracles. Points are the mean test error over seeds with the standard deviation
as error bars; x is the MACs of the network that produced the output (D_k alone, or the
Oracle). Figures are written with matplotlib's non-interactive Agg backend, SVG files without
a date so that a re-plot of the same runs gives the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nestdsl.diagnostics import fail
from nestdsl.experiment.tables import RunRecord, Stat, single_errors, stage_errors

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Role = Literal["nested", "baseline", "oracle"]
FORMATS = (".svg", ".png")
STYLE: dict[Role, tuple[str, str]] = {
    "nested": ("tab:green", "-"),
    "baseline": ("tab:red", "--"),
    "oracle": ("tab:blue", ":"),
}
"""Colour and line per role, the paper's: nested green, baselines red, Oracle blue."""


@dataclass(frozen=True)
class Curve:
    """One line of a plot: a label, its role, and (MACs, error) points in stage order."""

    label: str
    role: Role
    flops: tuple[int, ...]
    errors: tuple[Stat, ...]


def flops_curves(runs: Sequence[RunRecord], strategy: str = "osgd") -> list[Curve]:
    """Per spec: its anytime network under ``strategy`` and its Oracle, where those ran."""
    curves: list[Curve] = []
    for spec in sorted({r.spec for r in runs}):
        mine = [r for r in runs if r.spec == spec]
        anytime = [r for r in mine if r.kind == "anytime" and r.variant == strategy]
        if anytime:
            role: Role = "baseline" if anytime[0].baseline else "nested"
            errors = tuple(stage_errors(runs, spec, strategy))
            curves.append(Curve(f"{spec} ({strategy})", role, anytime[0].flops, errors))
        oracles = single_errors(runs, spec, "oracle")
        if oracles:
            flops = {r.stage: r.flops[-1] for r in mine if r.kind == "oracle"}
            curves.append(
                Curve(
                    f"{spec} Oracle",
                    "oracle",
                    tuple(flops[k] for k in oracles),
                    tuple(oracles.values()),
                )
            )
    return curves


def check_output(path: Path) -> None:
    """The figure's format comes from its suffix (E936 for any other)."""
    if path.suffix.lower() not in FORMATS:
        fail(
            "E936",
            f"cannot plot to `{path}`: unknown format (`{path.suffix or 'no suffix'}`)",
            help="name the output file with " + " or ".join(f"`{f}`" for f in FORMATS),
        )


def new_figure() -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams["svg.hashsalt"] = "nestdsl"
    plt.rcParams["svg.fonttype"] = "none"  # text as text: smaller files, searchable
    return plt.subplots(figsize=(6.4, 4.2), layout="constrained")


def save_figure(figure: Figure, path: Path) -> None:
    from matplotlib import pyplot as plt

    from nestdsl.files import check_output as check_writable

    check_writable(path)
    metadata = {"Date": None} if path.suffix.lower() == ".svg" else {}
    figure.savefig(path, metadata=metadata, dpi=120)
    plt.close(figure)


def plot_flops(curves: Sequence[Curve], path: Path, title: str = "") -> None:
    """Error vs MACs, one line per curve (Figure 9's form, lower is better)."""
    check_output(path)
    if not curves:
        fail("E935", "none of the given runs can be plotted", help="give finished runs")
    figure, axes = new_figure()
    markers = "osD^vP*X"
    for index, curve in enumerate(curves):
        colour, line = STYLE[curve.role]
        axes.errorbar(
            [f / 1e6 for f in curve.flops],
            [s.mean for s in curve.errors],
            yerr=[0.0 if s.count < 2 else s.std for s in curve.errors],
            label=curve.label,
            color=colour,
            linestyle=line,
            marker=markers[index % len(markers)],
            capsize=3,
        )
    axes.set_xlabel("MACs per input (millions)")
    axes.set_ylabel("top-1 test error (%)")
    axes.set_title(title or "Error against MACs (mean ± std over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    save_figure(figure, path)


def plot_priorities(runs: Sequence[RunRecord], spec: str, path: Path) -> None:
    """Error per stage for each OSGD priority order of ``spec`` and SGD (Figure 8's form)."""
    check_output(path)
    variants = sorted(
        {r.variant for r in runs if r.spec == spec and r.variant.partition("-p")[0] == "osgd"}
    )
    sgd = any(r.spec == spec and r.variant == "sgd" for r in runs)
    shown = [*variants, "sgd"] if sgd else variants
    figure, axes = new_figure()
    labels = next(r.labels for r in runs if r.spec == spec and r.kind == "anytime")
    for variant in shown:
        errors = stage_errors(runs, spec, variant)
        order = variant.partition("-p")[2].replace("-", ",")
        name = f"OSGD {order}" if order else ("OSGD 1,2,..." if variant == "osgd" else "SGD")
        axes.errorbar(
            range(1, len(errors) + 1),
            [s.mean for s in errors],
            yerr=[0.0 if s.count < 2 else s.std for s in errors],
            label=name,
            marker="o",
            capsize=3,
            linestyle="--" if variant == "sgd" else "-",
        )
    axes.set_xticks(range(1, len(labels) + 1), [f"{i} {lab}" for i, lab in enumerate(labels, 1)])
    axes.set_xlabel("stage")
    axes.set_ylabel("top-1 test error (%)")
    axes.set_title(f"{spec}: OSGD priority orders (highest first)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    save_figure(figure, path)
