"""The checked syntax tree of a `.nest` spec: pydantic models that forbid unknown keys.

The parser (``nestdsl.parse``) evaluates parameters and expressions and builds these models;
every node keeps the span of its statement and, in ``spans``, the span of each argument value
so that later passes (checks, IR builder) can point a caret at the exact value at fault.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from nestdsl.diagnostics import Span
from nestdsl.expr import Expr, Scalar

GrowthKind = Literal["width", "even_width", "depth", "cascade"]

BLOCK_KINDS: tuple[str, ...] = ("plain", "basic", "bottleneck", "sparse_resnet", "sparsenet")
GROWTH_KINDS: tuple[str, ...] = ("width", "even_width", "depth", "cascade")
SPARSE_KINDS: tuple[str, ...] = ("sparse_resnet", "sparsenet")
Connect = Literal["chain", "sparse", "dense"]
Shortcut = Literal["none", "identity", "projection", "auto", "concat"]
CONNECTS: tuple[str, ...] = ("chain", "sparse", "dense")
SHORTCUTS: tuple[str, ...] = ("none", "identity", "projection", "auto", "concat")


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


class Call(Node):
    """One line of a unit's body: a primitive or another unit, with unevaluated arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    args: dict[str, Expr] = Field(default_factory=dict)


class UnitDef(Node):
    """`unit NAME PARAM... [PARAM=default...] [shortcut=..] [post=..]` ... `end`.

    A named, parameterized sequence of primitives and other units. ``shortcut`` adds the
    unit's input to its body's output (`identity`, `projection` when the shape changes,
    `auto`: identity when the shape allows, else none) or concatenates it (`concat`);
    ``post`` is the activation after the sum.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    params: tuple[str, ...]
    defaults: dict[str, Expr] = Field(default_factory=dict)
    shortcut: Shortcut = "none"
    post: str = "identity"
    connect: Connect = "chain"
    """How a block of this unit connects its units unless the block says otherwise."""
    agg: Literal["sum", "concat"] | None = None
    width: Expr | None = None
    """`sparse` / `dense` blocks: the transition width (an expression of the arguments)."""
    body: tuple[Call, ...]


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
    kind: str
    """A built-in kind (:data:`BLOCK_KINDS`) or the name of a unit defined in the file."""
    count: PositiveInt
    channels: PositiveInt = 1
    stride: PositiveInt = 1
    expansion: PositiveInt = 4
    connect: Connect | None = None
    """How the units of the block are connected (None: as the unit's definition says)."""
    agg: Literal["sum", "concat"] | None = None
    """`sparse` / `dense` blocks: how a unit's inputs are combined (None: the unit's choice,
    else `concat` for `dense` and `sum` for `sparse`)."""
    width: int = 0
    """`sparse` / `dense` blocks: channels of the transition that starts the block when its
    input's shape differs (0: the unit's choice, else the input's channels)."""
    args: dict[str, Scalar | tuple[Scalar, ...]] = Field(default_factory=dict)
    """User units only: the unit's arguments (evaluated)."""

    @property
    def builtin(self) -> bool:
        """A block of a built-in kind (a unit of the prelude, with the `nest 1` arguments)."""
        return self.kind in BLOCK_KINDS

    def unit_args(self, unit: UnitDef) -> dict[str, Scalar | tuple[Scalar, ...]]:
        """The arguments the block gives its unit (built-in kinds: `channels`, `expansion`)."""
        if not self.builtin:
            return dict(self.args)
        given: dict[str, Scalar | tuple[Scalar, ...]] = {"channels": self.channels}
        return given | ({"expansion": self.expansion} if "expansion" in unit.params else {})

    def connection(self, unit: UnitDef) -> Connect:
        return self.connect or unit.connect


class Head(Node):
    """`head classes=N [pool=S] [hidden=(..)] [dropout=P]`: one classifier per stage.

    Average pooling to S×S (1: global), flatten, hidden linear layers with ReLU, the linear
    classifier; dropout with probability P before each linear layer.
    """

    classes: PositiveInt
    pool: PositiveInt = 1
    hidden: tuple[PositiveInt, ...] = ()
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


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
    stem: Stem | None
    """Required in `nest 1`; optional in `nest 2`, where a block of a unit can be the stem."""
    units: dict[str, UnitDef] = Field(default_factory=dict)
    """Every unit a block can use: the prelude's built-in kinds and the file's own."""
    blocks: tuple[Block, ...]
    head: Head
    schedule: Schedule
