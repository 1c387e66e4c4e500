"""The checked syntax tree of a `.nest` spec: pydantic models that forbid unknown keys.

The parser (``nestdsl.parse``) evaluates parameters and expressions and builds these models;
every node keeps the span of its statement and, in ``spans``, the span of each argument value
so that later passes (checks, IR builder) can point a caret at the exact value at fault.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from nestdsl.diagnostics import Span

BlockKind = Literal["plain", "basic", "bottleneck", "sparse_resnet", "sparsenet"]
GrowthKind = Literal["width", "even_width", "depth", "cascade"]

BLOCK_KINDS: tuple[str, ...] = ("plain", "basic", "bottleneck", "sparse_resnet", "sparsenet")
GROWTH_KINDS: tuple[str, ...] = ("width", "even_width", "depth", "cascade")
SPARSE_KINDS: tuple[str, ...] = ("sparse_resnet", "sparsenet")


class Node(BaseModel):
    """Base of every AST node: a statement span plus per-argument value spans."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    span: Span
    spans: dict[str, Span] = Field(default_factory=dict)

    def span_of(self, key: str) -> Span:
        """The span of argument ``key``, falling back to the whole statement."""
        return self.spans.get(key, self.span)


class InputShape(Node):
    """`input shape=(C, H, W)`: the image the network takes."""

    channels: PositiveInt
    height: PositiveInt
    width: PositiveInt


class Stem(Node):
    """`stem conv channels=.. kernel=.. stride=.. [pool=max]`: the first convolution."""

    channels: PositiveInt
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    pool: Literal["none", "max"] = "none"


class Block(Node):
    """`block NAME KIND count=.. channels=.. stride=..`: one resolution block.

    ``count`` is the number of repeated units: residual units for `basic`/`bottleneck`,
    convolution layers for `plain`, `sparse_resnet` and `sparsenet`. ``channels`` is the
    width of the full (last-stage) network: the 3x3 width for `bottleneck` (its output is
    ``channels * expansion``), the growth rate for `sparsenet`.
    """

    name: str
    kind: BlockKind
    count: PositiveInt
    channels: PositiveInt
    stride: PositiveInt = 1
    expansion: PositiveInt = 4


class Head(Node):
    """`head classes=N`: global average pooling and one linear classifier per stage."""

    classes: PositiveInt


class GrowthStep(Node):
    """One step of the nesting schedule; several kinds at once is simultaneous growth."""

    kinds: tuple[GrowthKind, ...]


class Schedule(Node):
    """`schedule ...`: the growth steps from stage 1 to stage n (empty: a plain network)."""

    steps: tuple[GrowthStep, ...] = ()


class Spec(Node):
    """A whole `.nest` file: base network (the full, last-stage network) plus schedule."""

    version: int
    name: str
    path: str
    source: str
    params: dict[str, int | float | str] = Field(default_factory=dict)
    input: InputShape
    stem: Stem
    blocks: tuple[Block, ...]
    head: Head
    schedule: Schedule
