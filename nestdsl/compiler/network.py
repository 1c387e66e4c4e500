"""The compiled anytime network: joint execution, anytime execution, stage parameters.

Joint execution (``forward``) runs each IR layer as one dense op, all stages at once, as fast
as a hand-written model of the last stage. Anytime execution (``anytime``) walks the stages in
order and computes only the units new at each stage from cached unit tensors, so stopping
after stage k has cost exactly FLOPs(D_k) plus the heads, and the autograd graph behind
output k touches only D_k's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, overload

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.compiler.assembly import WeightBank
from nestdsl.compiler.ops import OPS, LayerOp, combine
from nestdsl.compiler.plans import PLANNERS, Execution
from nestdsl.ir.model import Layer, NestIR, UnitId

if TYPE_CHECKING:
    from nestdsl.evaluate.runtime import AnytimeResult


def module_key(layer_id: str) -> str:
    """Layer ids contain dots, which module names may not."""
    return layer_id.replace(".", ":")


SumKey = tuple[tuple[UnitId, ...], int]
"""A combined input group and the pooled size it was combined at (0: not pooled)."""


@dataclass(frozen=True)
class _Step:
    """Anytime work item: compute ``stripes`` of ``layer`` from gathered ``groups``.

    ``groups`` lists, in input-channel order, the units summed into each gathered chunk
    (one unit per chunk for concatenation, one per input layer for a sum).
    """

    layer: str
    stripes: tuple[int, ...]
    groups: tuple[tuple[UnitId, ...], ...]
    agg: str
    """How the units of one group combine (sum, or product for an SE gate)."""
    pool: int
    """A head's pooled size (it combines pooled unit tensors), 0 for every other layer."""
    reuse: tuple[bool, ...]
    """Per group: whether its combination is kept in ``AnytimeState.sums`` because a later
    stage reads the same group again (e.g. a Sparse ResNet layer's summed input stripe)."""


class NestedNet(nn.Module):
    """An anytime network with one output per stage; see ``docs/contracts.md``."""

    def __init__(self, ir: NestIR):
        super().__init__()
        self.ir = ir
        self.num_stages = ir.num_stages
        self.input_shape = ir.input_shape
        self.num_classes = ir.num_classes
        self.stage_labels = ir.stage_labels
        self.ops = nn.ModuleDict()
        for layer in ir.layers.values():
            if layer.op != "input":
                kept = [ir.kept_channels(unit) for unit in layer.units()]
                self.ops[module_key(layer.id)] = OPS[layer.op](layer, kept, ir.in_channels(layer))
        self._order = [layer for layer in ir.layers.values() if layer.op != "input"]
        self._last_use = _last_use(self._order)
        self._staged: list[tuple[int, int, nn.Parameter]] = sorted(
            (
                (layer.stripe_stages[j], position, p)
                for position, layer in enumerate(self._order)
                for j in range(len(layer.stripes))
                for p in self.op(layer.id).unit_parameters(j)
            ),
            key=lambda item: (item[0], item[1]),
        )
        self._steps, self._sums_done = _share_sums(
            [_plan_stage(ir, k) for k in range(1, ir.num_stages + 1)]
        )
        # Each layer's op, and each anytime step's op and whether it is a head, looked up
        # once: a pass makes one lookup per layer, which a launch-bound GPU pays for.
        self._layer_ops = [(layer, self.op(layer.id)) for layer in self._order]
        self._work = [
            [(step, self.op(step.layer), self.op(step.layer).layer.op == "head") for step in steps]
            for steps in self._steps
        ]
        self.execution: Execution = "auto"
        self._unit_of: dict[int, UnitId] = {
            id(p): unit
            for layer in self._order
            for unit in layer.units()
            for p in self.op(layer.id).unit_parameters(unit[1])
        }
        self.bank = WeightBank(
            {layer.id: op for layer in self._order if (op := self.op(layer.id)).assembles()}
        )
        self.register_load_state_dict_post_hook(_retie_after_load)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> NestedNet:
        """``Module.to``, ``.half()``, ... give the parameters new storage: gather them into
        a new flat tensor of the weight bank (in their new device, dtype and layout)."""
        super()._apply(fn, recurse)
        self.bank.retie()
        return self

    def op(self, layer_id: str) -> LayerOp:
        op = self.ops[module_key(layer_id)]
        assert isinstance(op, LayerOp)
        return op

    # --- execution --------------------------------------------------------------------------

    def set_execution(self, execution: Execution) -> None:
        """How joint execution runs width-nested convolutions: ``"auto"`` (the default) picks,
        per layer and device type, the dense weight or blocks of stripes that skip the pruned
        zeros, whichever ``compiler.plans`` rates faster; ``"dense"`` and ``"blockwise"``
        force one (all three compute the same outputs and gradients)."""
        if execution not in PLANNERS:
            raise ValueError(f"execution must be one of {', '.join(PLANNERS)}, got {execution!r}")
        self.execution = execution
        for op in self.ops.values():
            assert isinstance(op, LayerOp)
            op.set_execution(execution)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Joint execution: every stage's logits ([B, classes] each) from one dense pass."""
        outputs = self._run(x, keep=False)
        return [outputs[head] for head in self.ir.heads]

    def activations(self, x: Tensor) -> dict[UnitId, Tensor]:
        """Every unit's activation from joint execution (for inspection and tests)."""
        outputs = self._run(x, keep=True)
        return {
            (layer.id, j): outputs[layer.id][:, start : start + width]
            for layer in self.ir.layers.values()
            for j, (start, width) in enumerate(zip(layer.offsets(), layer.stripes, strict=True))
        }

    def _run(self, x: Tensor, keep: bool) -> dict[str, Tensor]:
        outputs: dict[str, Tensor] = {"input": x}
        assembled = self.bank.assemble(x.device.type)
        for index, (layer, op) in enumerate(self._layer_ops):
            inputs = [outputs[s] for s in layer.inputs]
            outputs[layer.id] = op(inputs, assembled.get(layer.id, ()))
            if not keep:
                for finished in self._last_use.get(index, ()):
                    del outputs[finished]
        return outputs

    def anytime(self, x: Tensor) -> Iterator[Tensor]:
        """Yield each stage's logits in order, computing only the units new at that stage."""
        state = self.start(x)
        for _ in range(self.num_stages):
            yield self.advance(state)

    def start(self, x: Tensor) -> AnytimeState:
        """The state before stage 1: only the input ([B, C, H, W]) is known."""
        return AnytimeState(cache={("input", 0): x}, pooled={})

    def advance(self, state: AnytimeState) -> Tensor:
        """Run the next stage on ``state`` and return its logits ([B, classes]).

        Stepping by hand (instead of ``anytime``) lets a caller look at stage k's output
        before paying for stage k+1: stop, or drop rows with ``state.keep`` so the next
        stage computes only for the examples still undecided.
        """
        if state.stage >= self.num_stages:
            raise ValueError(f"all {self.num_stages} stages have already run")
        for step, op, is_head in self._work[state.stage]:
            source = (
                _PooledView(state.cache, state.pooled, op.layer.output_size)
                if is_head
                else state.cache
            )
            gathered = _gather(step, source, state.sums)
            outputs = op.forward_units(gathered, step.stripes)
            for j, tensor in zip(step.stripes, outputs, strict=True):
                state.cache[(step.layer, j)] = tensor
        for key in self._sums_done[state.stage]:  # no later stage reads these sums
            state.sums.pop(key, None)
        state.stage += 1
        return state.cache[(self.ir.heads[state.stage - 1], 0)]

    @overload
    def within(
        self,
        x: Tensor,
        seconds: float | None = ...,
        *,
        macs: int | None = ...,
        per_example: Literal[False] = ...,
    ) -> AnytimeResult: ...

    @overload
    def within(
        self,
        x: Tensor,
        seconds: float | None = ...,
        *,
        macs: int | None = ...,
        per_example: Literal[True],
    ) -> list[AnytimeResult]: ...

    def within(
        self,
        x: Tensor,
        seconds: float | None = None,
        *,
        macs: int | None = None,
        per_example: bool = False,
    ) -> AnytimeResult | list[AnytimeResult]:
        """Anytime inference under a deadline (``seconds``) and/or a budget of ``macs`` per
        example: the last stage that finished in time, its logits, and when it was ready.

        Stage 0 with no logits means no stage finished; see :mod:`nestdsl.evaluate.runtime`,
        which holds the logic. ``per_example=True`` runs each row alone with its own budget.
        """
        from nestdsl.evaluate.runtime import Budget, run_each, run_within

        budget = Budget(seconds=seconds, macs=macs)
        return run_each(self, x, budget) if per_example else run_within(self, x, budget)

    # --- parameters -------------------------------------------------------------------------

    def stage_parameters(self, k: int) -> list[nn.Parameter]:
        """Parameters of D_k: trunk units of stage <= k and heads 1..k (a prefix of D_{k+1}'s)."""
        self._check_stage(k)
        return [p for stage, _, p in self._staged if stage <= k]

    def loss_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters loss k reaches: units on a path to head k, and head k itself.

        This is D_k *by loss path*: head j < k, and a cascade exit branch j < k, belong to
        L_j only, although ``stage_parameters(k)`` lists them. NormSGD averages a parameter's
        update over the losses in this sense (the paper's "subnetworks in which they
        participate"). In stage order, like ``stage_parameters``.
        """
        self._check_stage(k)
        head = (self.ir.heads[k - 1], 0)
        reached = nx.ancestors(self.ir.graph, head) | {head}
        return [p for stage, _, p in self._staged if stage <= k and self._unit_of[id(p)] in reached]

    def new_parameters(self, k: int) -> list[nn.Parameter]:
        """w_k minus w_{k-1}: the parameters stage k introduces."""
        self._check_stage(k)
        return [p for stage, _, p in self._staged if stage == k]

    def subnetwork(self, k: int) -> Standalone:
        """D_k as a standalone single-output network sharing nothing with this one."""
        self._check_stage(k)
        sub = NestedNet(self.ir.restrict(k))
        with torch.no_grad():
            for layer in sub._order:
                mine, theirs = self.op(layer.id), sub.op(layer.id)
                for j in range(len(layer.stripes)):
                    for src, dst in zip(
                        mine.unit_parameters(j), theirs.unit_parameters(j), strict=True
                    ):
                        dst.copy_(src)
                for name, buffer in theirs.named_buffers(recurse=False):
                    if name.startswith("running_"):
                        buffer.copy_(getattr(mine, name)[: buffer.numel()])
        sub.train(self.training)
        sub.set_execution(self.execution)
        return Standalone(sub, self.stage_labels[k - 1])

    def _check_stage(self, k: int) -> None:
        if not 1 <= k <= self.num_stages:
            raise ValueError(f"stage must be in 1..{self.num_stages}, got {k}")

    def extra_repr(self) -> str:
        return f"name={self.ir.name!r}, stages={' '.join(self.stage_labels)}"

    # --- what each anytime stage exchanges (for incremental deployment) --------------------

    def stage_writes(self, k: int) -> tuple[UnitId, ...]:
        """The units ``advance`` computes at stage k, in order (head k's output among them)."""
        self._check_stage(k)
        return tuple((step.layer, j) for step in self._steps[k - 1] for j in step.stripes)

    def stage_reads(self, k: int) -> tuple[UnitId, ...]:
        """The units of earlier stages (or ``("input", 0)``) that stage k reads: with these
        in ``AnytimeState.cache``, ``advance`` can run stage k and needs nothing else."""
        written = set(self.stage_writes(k))
        read = (unit for step in self._steps[k - 1] for group in step.groups for unit in group)
        return tuple(dict.fromkeys(unit for unit in read if unit not in written))


@dataclass
class AnytimeState:
    """What the stages run so far computed, for the stages still to come.

    ``cache`` holds every unit tensor computed so far ([B, stripe channels, H, W]);
    ``pooled`` the average-pooled copies heads read. All share the batch dimension, which is
    what makes ``keep`` possible.
    """

    cache: dict[UnitId, Tensor]
    pooled: dict[tuple[UnitId, int], Tensor]
    stage: int = 0
    """How many stages have run."""
    sums: dict[SumKey, Tensor] = field(default_factory=dict)
    """Combined input groups that a later stage reads again (computed again when missing)."""

    @property
    def batch(self) -> int:
        return next(iter(self.cache.values())).shape[0]

    def keep(self, rows: Tensor) -> None:
        """Keep only ``rows`` of the batch (a [B] bool mask or an index tensor) for later
        stages: the examples that exited stop costing anything."""
        self.cache = {unit: tensor[rows] for unit, tensor in self.cache.items()}
        self.pooled = {key: tensor[rows] for key, tensor in self.pooled.items()}
        self.sums = {group: tensor[rows] for group, tensor in self.sums.items()}


class Standalone(nn.Module):
    """A single-output network D_k (deployment, `--standalone`); not the paper's Oracle."""

    def __init__(self, net: NestedNet, label: str):
        super().__init__()
        self.net = net
        self.label = label
        self.input_shape = net.input_shape
        self.num_classes = net.num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0]


# --- planning helpers ------------------------------------------------------------------------


def _plan_stage(ir: NestIR, stage: int) -> list[_Step]:
    """The anytime work of one stage: new units, grouped by identical kept inputs."""
    steps: list[_Step] = []
    for layer in ir.layers.values():
        if layer.op == "input":
            continue
        pool = layer.output_size if layer.op == "head" else 0
        groups: dict[tuple[tuple[UnitId, ...], ...], list[int]] = {}
        for j, unit_stage in enumerate(layer.stripe_stages):
            if unit_stage == stage:
                groups.setdefault(_gather_groups(ir, layer, (layer.id, j)), []).append(j)
        steps.extend(
            _Step(layer.id, tuple(js), key, layer.agg, pool, (False,) * len(key))
            for key, js in groups.items()
        )
    return steps


def _gather_groups(ir: NestIR, layer: Layer, unit: UnitId) -> tuple[tuple[UnitId, ...], ...]:
    kept = ir.kept_inputs(unit)
    if layer.agg == "concat" or len(layer.inputs) == 1:
        return tuple((u,) for u in kept)
    by_stripe: dict[int, list[UnitId]] = {}
    for u in kept:
        by_stripe.setdefault(u[1], []).append(u)
    return tuple(tuple(by_stripe[i]) for i in sorted(by_stripe))


def _share_sums(stages: list[list[_Step]]) -> tuple[list[list[_Step]], list[list[SumKey]]]:
    """Mark the combined groups that several steps read, so the first computes them once
    for all; and list, per stage, the marked groups no later stage reads (freed after it).

    In a width-nested Sparse ResNet every stage re-reads the summed input stripes of the
    earlier ones (and each head the pooled sums of the one before): combining them afresh
    each time cost as many additions as there were convolutions.
    """
    readers: dict[SumKey, list[int]] = {}
    for stage, steps in enumerate(stages):
        for step in steps:
            for group in step.groups:
                if len(group) > 1:
                    readers.setdefault((group, step.pool), []).append(stage)
    last_reader = {key: max(read) for key, read in readers.items() if len(read) > 1}
    marked = [
        [
            replace(step, reuse=tuple((group, step.pool) in last_reader for group in step.groups))
            for step in steps
        ]
        for steps in stages
    ]
    done = [
        [key for key, last in last_reader.items() if last == stage] for stage in range(len(stages))
    ]
    return marked, done


def _gather(step: _Step, cache: dict[UnitId, Tensor], sums: dict[SumKey, Tensor]) -> Tensor:
    """The step's input: each group combined (or taken from ``sums``), concatenated."""
    chunks = []
    for group, reuse in zip(step.groups, step.reuse, strict=True):
        if len(group) == 1 and not reuse:  # most groups: one unit, nothing to combine
            chunks.append(cache[group[0]])
            continue
        key = (group, step.pool)
        if reuse and key in sums:
            chunks.append(sums[key])
            continue
        chunk = combine(step.agg, [cache[unit] for unit in group])
        if reuse:
            sums[key] = chunk
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)


class _PooledView(dict[UnitId, Tensor]):
    """Average-pooled unit tensors for heads, computed once per unit and size on first use."""

    def __init__(
        self,
        cache: dict[UnitId, Tensor],
        pooled: dict[tuple[UnitId, int], Tensor],
        size: int,
    ):
        super().__init__()
        self.cache = cache
        self.pooled = pooled
        self.size = size

    def __missing__(self, unit: UnitId) -> Tensor:
        key = (unit, self.size)
        if key not in self.pooled:  # [B, C, s, s]
            self.pooled[key] = F.adaptive_avg_pool2d(self.cache[unit], self.size)
        return self.pooled[key]


def _retie_after_load(module: nn.Module, _: Any) -> None:
    """``load_state_dict(assign=True)`` replaces parameters: tie the new ones to the bank."""
    assert isinstance(module, NestedNet)
    module.bank.retie()


def _last_use(order: list[Layer]) -> dict[int, list[str]]:
    """After which layer index each output (heads excepted) can be freed in joint execution."""
    last: dict[str, int] = {}
    for index, layer in enumerate(order):
        for source in layer.inputs:
            last[source] = index
    freed: dict[int, list[str]] = {}
    for layer_id, index in last.items():
        freed.setdefault(index, []).append(layer_id)
    return freed
