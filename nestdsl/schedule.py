"""Expand a nesting schedule into what each stage adds: stripes, depth levels, labels.

A schedule is a list of growth steps. Stage 1 is the seed (one stripe, one depth level);
each step creates the next stage by adding a stripe (`width` doubles the total width,
`even_width` adds one base-width stripe), a depth level (`depth` doubles the depth by
interlacing, `cascade` doubles the trunk that a new exit branch reads), or several of these
at once (simultaneous growth).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nestdsl.ast import Schedule


@dataclass(frozen=True)
class StagePlan:
    """What the schedule means, stage by stage (all stage numbers are 1-based)."""

    num_stages: int
    stripe_ratios: tuple[int, ...]
    """Relative stripe widths, e.g. (1, 1, 2) for `width * 2`; a layer of C channels gets
    C * r / sum(stripe_ratios) channels in each stripe."""
    stripe_stages: tuple[int, ...]
    """The stage that introduces each stripe."""
    level_stages: tuple[int, ...]
    """The stage that introduces each depth level (interlaced depth, or cascade exit)."""
    cascade: bool
    """Depth levels are cascade exits on one trunk rather than interlaced layers."""
    labels: tuple[str, ...]
    """The paper's size labels per stage: `w2`, `d4`, `w2d1` ..."""

    @property
    def depth_levels(self) -> int:
        return len(self.level_stages)

    @property
    def width_units(self) -> int:
        """The number a layer's channel count must be divisible by."""
        return sum(self.stripe_ratios)

    def stripe_channels(self, channels: int) -> tuple[int, ...]:
        """Split a full-width channel count into stripes (assumes divisibility was checked)."""
        unit = channels // self.width_units
        return tuple(unit * r for r in self.stripe_ratios)

    def level_of_stage(self, stage: int) -> int:
        """The deepest depth level (1-based) present at ``stage``."""
        return sum(s <= stage for s in self.level_stages)

    def relative_width(self, stage: int) -> int:
        """Channels of D_stage over channels of D_1 (the stripe ratios present at ``stage``)."""
        present = sum(
            r for r, s in zip(self.stripe_ratios, self.stripe_stages, strict=True) if s <= stage
        )
        return present // self.stripe_ratios[0]

    def relative_depth(self, stage: int) -> int:
        """Depth of D_stage over depth of D_1: each level (or cascade exit) doubles it."""
        return 2 ** (self.level_of_stage(stage) - 1)


def expand(schedule: Schedule) -> StagePlan:
    """Turn the schedule's growth steps into a :class:`StagePlan`."""
    ratios, stripe_stages, level_stages = [1], [1], [1]
    for stage, step in enumerate(schedule.steps, start=2):
        kinds = set(step.kinds)
        if "width" in kinds:
            ratios.append(sum(ratios))
            stripe_stages.append(stage)
        if "even_width" in kinds:
            ratios.append(ratios[0])
            stripe_stages.append(stage)
        if kinds & {"depth", "cascade"}:
            level_stages.append(stage)
    kinds_used: set[str] = {k for step in schedule.steps for k in step.kinds}
    plan = StagePlan(
        num_stages=len(schedule.steps) + 1,
        stripe_ratios=tuple(ratios),
        stripe_stages=tuple(stripe_stages),
        level_stages=tuple(level_stages),
        cascade="cascade" in kinds_used,
        labels=(),
    )
    return replace(plan, labels=_labels(plan, kinds_used))


def _labels(plan: StagePlan, kinds_used: set[str]) -> tuple[str, ...]:
    """The paper's labels: `w` and/or `d` followed by the relative width and depth."""
    grows_width = bool(kinds_used & {"width", "even_width"})
    grows_depth = bool(kinds_used & {"depth", "cascade"})
    return tuple(
        (f"w{plan.relative_width(k)}" if grows_width or not grows_depth else "")
        + (f"d{plan.relative_depth(k)}" if grows_depth else "")
        for k in range(1, plan.num_stages + 1)
    )
