"""Stage colours, chosen the way the paper's Figures 3-7 colour layers.

A stage that adds a depth level (interlaced layers, a cascade exit, or width and depth at once)
starts a new hue; a stage that only adds width is a lighter shade of the previous stage's hue,
so the stripes of one layer read as shades of one colour (Figures 4-6: dark blue, light blue,
green, light green). Every stage still gets its own colour, which the legend maps back.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

from nestdsl.ir.model import NestIR

HUES: tuple[float, ...] = (212, 128, 28, 276, 352, 176, 48, 318)
"""Degrees on the colour wheel, in order of use: blue, green, orange, purple, red, teal ..."""

DARKEST, LIGHTEST = 0.36, 0.80
"""Lightness range of the shades within one hue."""


@dataclass(frozen=True)
class StageColour:
    """Fill and text colour of the units of one stage."""

    fill: str
    font: str


def _hex(hue: float, lightness: float, saturation: float) -> str:
    red, green, blue = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
    return "#" + "".join(f"{round(c * 255):02x}" for c in (red, green, blue))


def depth_stages(ir: NestIR) -> frozenset[int]:
    """Stages that introduce layers (stage 1, depth levels, cascade exits), not just stripes."""
    return frozenset({1} | {layer.stage for layer in ir.layers.values() if layer.op != "head"})


def stage_colours(ir: NestIR) -> dict[int, StageColour]:
    """One colour per stage: a hue per depth step, lighter shades for width-only steps."""
    groups: list[list[int]] = []
    starts = depth_stages(ir)
    for stage in range(1, ir.num_stages + 1):
        if stage in starts or not groups:
            groups.append([])
        groups[-1].append(stage)
    colours: dict[int, StageColour] = {}
    for index, group in enumerate(groups):
        hue = HUES[index % len(HUES)]
        for shade, stage in enumerate(group):
            step = (LIGHTEST - DARKEST) / max(len(group) - 1, 1)
            lightness = DARKEST + shade * step if len(group) > 1 else 0.45
            colours[stage] = StageColour(
                fill=_hex(hue, lightness, 0.62),
                font="#ffffff" if lightness < 0.55 else "#000000",
            )
    return colours
