"""The paper's Oracle baseline as a spec transformation: stage k as an ordinary network.

The paper compares each stage D_k of an anytime network with an *independently trained*
network of the same size. ``oracle_spec(spec, k)`` builds that network's spec: the base
network at stage k's widths and depths, with no schedule, so nothing is pruned (D_k itself
keeps the nesting's pruned edges: a stage-1 stripe never reads a stage-2 stripe, even in D_2).

- width / even_width: every layer keeps the share of its channels that the stripes of
  stages <= k hold (``channels`` is still divisible, the checks guaranteed it);
- depth: a sparse block keeps the layers of the deepest level present at k, which is what
  that level computes in its own indexing: ``count / 2**(levels - level)`` layers;
- cascade: the trunk up to exit k (blocks after it dropped, the block holding it cut at the
  exit), read by the ordinary head; the exit's own 3×3 branch is not part of the trunk.

``oracle_source`` prints that spec as ``.nest`` text with every value written out, and
``oracle`` parses and checks that text again, so the Oracle is saved, read, diffed, compiled
and trained like any other spec (and its spans point into its own text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nestdsl.ast import SPARSE_KINDS, Block, Schedule, Spec, Stem
from nestdsl.cost import stage_costs
from nestdsl.diagnostics import fail
from nestdsl.ir import build_ir
from nestdsl.load import loads
from nestdsl.schedule import StagePlan, expand


@dataclass(frozen=True)
class OracleCost:
    """The Oracle of one stage beside the nested D_k it stands for (MAC FLOPs, one input)."""

    stage: int
    label: str
    params: int
    flops: int
    nested_params: int
    nested_flops: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def oracle_cost(spec: Spec, stage: int) -> OracleCost:
    """Parameters and FLOPs of the Oracle of ``stage`` and of D_stage deployed alone."""
    (plain,) = stage_costs(build_ir(oracle(spec, stage)))  # refuses a stage out of range
    nested = stage_costs(build_ir(spec))[stage - 1]
    return OracleCost(stage, nested.label, plain.params, plain.flops, nested.params, nested.flops)


def oracle(spec: Spec, stage: int) -> Spec:
    """The checked Oracle spec of ``stage`` (parsed from :func:`oracle_source`'s text)."""
    return loads(oracle_source(spec, stage), f"{spec.path} [oracle {stage}]")


def oracle_source(spec: Spec, stage: int) -> str:
    """The Oracle of ``stage`` as ``.nest`` text, headed by a comment saying where it is from."""
    plain = transform(spec, stage)
    label = expand(spec.schedule).labels[stage - 1]
    comment = (
        f"Oracle of stage {stage} ({label}) of `{spec.name}`: the same network at that stage's\n"
        "widths and depths, un-nested (nothing pruned), to be trained on its own."
    )
    return format_spec(plain, comment)


def transform(spec: Spec, stage: int) -> Spec:
    """The plain (un-nested) network of stage ``stage``'s widths and depths; see module doc.

    A stage outside ``1..n`` is a user error (T005), as for ``--standalone``.
    """
    plan = expand(spec.schedule)
    if not 1 <= stage <= plan.num_stages:
        fail(
            "T005",
            f"--oracle {stage}: `{spec.name}` has only {plan.num_stages} stages",
            help=f"choose a stage in 1..{plan.num_stages}",
        )
    stem = _builtin_stem(spec)
    label = plan.labels[stage - 1]
    blocks = _cut_trunk(spec, plan, stage) if plan.cascade else _keep_levels(spec, plan, stage)
    return spec.model_copy(
        update={
            "name": f"{spec.name}_oracle_{label}",
            "params": {},
            "stem": stem.model_copy(update={"channels": _width(stem.channels, plan, stage)}),
            "blocks": tuple(
                block.model_copy(update={"channels": _width(block.channels, plan, stage)})
                for block in blocks
            ),
            "schedule": Schedule(span=spec.schedule.span),
        }
    )


def _builtin_stem(spec: Spec) -> Stem:
    """The stem of a spec of built-in kinds only (else T017).

    The transformation rescales `channels` and `count` of the built-in kinds; a user unit's
    widths are expressions of its own arguments, which it cannot rescale faithfully.
    """
    custom = next((block for block in spec.blocks if not block.builtin), None)
    if spec.stem is None or custom is not None:
        where = f"block `{custom.name}` uses unit `{custom.kind}`" if custom else "it has no stem"
        fail(
            "T017",
            f"--oracle needs a spec of built-in block kinds; in `{spec.name}` {where}",
            custom.span if custom else None,
            help="write the Oracle of this stage as its own plain spec (the stage's widths and "
            "depths, no schedule) and train it with `nestdsl train`",
        )
    return spec.stem


def _width(channels: int, plan: StagePlan, stage: int) -> int:
    """The channels of a layer's stripes that exist at ``stage``."""
    kept = sum(
        ratio
        for ratio, introduced in zip(plan.stripe_ratios, plan.stripe_stages, strict=True)
        if introduced <= stage
    )
    return channels // plan.width_units * kept


def _keep_levels(spec: Spec, plan: StagePlan, stage: int) -> tuple[Block, ...]:
    """Interlaced depth: sparse blocks keep the layers of the deepest level at ``stage``."""
    drop = 2 ** (plan.depth_levels - plan.level_of_stage(stage))
    return tuple(
        block.model_copy(update={"count": block.count // drop})
        if block.kind in SPARSE_KINDS
        else block
        for block in spec.blocks
    )


def _cut_trunk(spec: Spec, plan: StagePlan, stage: int) -> tuple[Block, ...]:
    """Cascade: the first ``total / 2**(levels - level)`` trunk positions, as the IR puts exits."""
    total = sum(block.count for block in spec.blocks)
    left = total // 2 ** (plan.depth_levels - plan.level_of_stage(stage))
    kept: list[Block] = []
    for block in spec.blocks:
        if left == 0:
            break
        kept.append(block.model_copy(update={"count": min(block.count, left)}))
        left -= kept[-1].count
    return tuple(kept)


def format_spec(spec: Spec, comment: str | None = None) -> str:
    """``.nest`` source for ``spec`` with every value literal (parameters already applied)."""
    shape = spec.input
    stem = _builtin_stem(spec)
    lines = [f"nest {spec.version}"]
    lines += [f"# {line}" for line in (comment or "").splitlines()]
    lines += [f"network {spec.name}", ""]
    lines.append(f"input    shape=({shape.channels}, {shape.height}, {shape.width})")
    stem_text = f"stem     conv channels={stem.channels} kernel={stem.kernel}"
    stem_text += f" stride={stem.stride}" if stem.stride != 1 else ""
    stem_text += f" pool={stem.pool}" if stem.pool != "none" else ""
    lines.append(stem_text)
    for block in spec.blocks:
        text = (
            f"block    {block.name} {block.kind} count={block.count} "
            f"channels={block.channels} stride={block.stride}"
        )
        default_expansion = Block.model_fields["expansion"].default
        text += f" expansion={block.expansion}" if block.expansion != default_expansion else ""
        lines.append(text)
    lines.append(f"head     classes={spec.head.classes}")
    return "\n".join(lines) + "\n"
