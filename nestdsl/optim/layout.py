"""Which parameter belongs to which subnetwork, and where its gradient lies in the flat rows.

`fill_grad` needs, for each distinct parameter, the stages whose subnetwork contains it (its
*membership*): that decides which gradient pieces enter the Gram matrix and NormSGD's
per-parameter average. It also places every parameter in one column order, grouped by
membership, so that each stage's gradient fills a few contiguous runs of a flat (n, D) matrix
and each membership pattern's combination is a few column ranges: the number of ops per step
depends on the number of patterns, not of tensors.

Columns hold each parameter's entries in its memory order (``nestdsl.memory_order``), so the
combined direction's columns are handed to the parameters as views with their own strides.
Parameters whose gradients arrive as one flat vector (``captured``, see `FlatGradients`) come
first, ordered so that one gather of that vector fills their columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from nestdsl.memory_order import channels_last, unflatten


@dataclass(frozen=True)
class Run:
    """Columns [start, stop) of the flat matrix, filled by one stage's params at `slots`."""

    start: int
    stop: int
    slots: tuple[int, ...]


@dataclass(frozen=True)
class GradViews:
    """One flat buffer of the combined direction, and every parameter's `.grad` as a view of
    it (reused every step, as DDP's ``gradient_as_bucket_view`` does)."""

    buffer: Tensor
    views: list[Tensor]


@dataclass(frozen=True)
class StageLayout:
    """Distinct trainable parameters in stage order, their memberships and columns.

    stages[i]      the distinct trainable params of D_{i+1} (duplicates removed)
    params         every distinct param of any stage, in order of first appearance
    members[p]     0-based stages containing params[p], ascending
    slots[p]       for each member stage, the index of params[p] within stages[i]
    dims[i]        d_{i+1}: the number of scalars in D_{i+1}
    columns[p]     the first column of params[p]
    last[p]        whether params[p]'s columns are in channels-last memory order
    runs[i]        the contiguous column runs that stage i's gradient fills, in column order
    width          D: the number of columns (scalars of all distinct params)
    captured       how many columns (the first ones) the captured params fill
    sources        for each captured column, its position in the captured flat vector
    """

    stages: list[list[torch.nn.Parameter]]
    params: list[torch.nn.Parameter]
    members: list[list[int]]
    slots: list[list[int]]
    dims: list[int]
    columns: list[int]
    last: list[bool]
    runs: list[list[Run]]
    width: int
    captured: int = 0
    sources: list[tuple[int, int]] = field(default_factory=list)
    """(position, size) per captured param in column order: a run of the flat vector."""

    @classmethod
    def build(
        cls,
        stage_params: Sequence[Sequence[torch.nn.Parameter]],
        captured: Sequence[Tensor] = (),
    ) -> StageLayout:
        """The layout of `stage_params`; `captured`, in their flat vector's order, are the
        params whose gradients arrive as that vector (those of no stage are left out)."""
        stages = [_distinct_trainable(group) for group in stage_params]
        params, members, slots, index = _memberships(stages)
        dims = [sum(p.numel() for p in group) for group in stages]
        columns, sources = _place(params, members, _flat_positions(captured))
        captured_width = sum(size for _, size in sources)
        return cls(
            stages,
            params,
            members,
            slots,
            dims,
            columns,
            [channels_last(p) for p in params],
            [_runs(group, index, columns, captured_width) for group in stages],
            sum(p.numel() for p in params),
            captured_width,
            sources,
        )

    @cached_property
    def patterns(self) -> dict[tuple[int, ...], list[int]]:
        """Params (indices into `params`) grouped by their membership (0-based stages)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for at, stages in enumerate(self.members):
            groups.setdefault(tuple(stages), []).append(at)
        return groups

    @cached_property
    def pattern_ranges(self) -> dict[tuple[int, ...], list[tuple[int, int]]]:
        """The column ranges of each membership pattern: one in the captured block and one
        after it at most, since columns are sorted by membership within each."""
        ranges: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for members, group in self.patterns.items():
            spans = sorted(
                (self.columns[at], self.columns[at] + self.params[at].numel()) for at in group
            )
            merged: list[tuple[int, int]] = []
            for start, stop in spans:
                if merged and merged[-1][1] == start and start != self.captured:
                    merged[-1] = (merged[-1][0], stop)
                else:
                    merged.append((start, stop))
            ranges[members] = merged
        return ranges

    @cached_property
    def blanks(self) -> list[list[tuple[int, int]]]:
        """Per stage, the captured columns of params outside it: a gather of the flat
        vector fills every captured column, and these are then zeroed."""
        return [
            [
                span
                for members, spans in self.pattern_ranges.items()
                if i not in members
                for span in spans
                if span[1] <= self.captured
            ]
            for i in range(len(self.stages))
        ]

    @cached_property
    def stage_last(self) -> list[frozenset[int]]:
        """Per stage, the slots of the params whose columns are in channels-last order."""
        last = {id(p) for p, flag in zip(self.params, self.last, strict=True) if flag}
        return [frozenset(s for s, p in enumerate(group) if id(p) in last) for group in self.stages]

    @cached_property
    def stage_sizes(self) -> list[list[int]]:
        """Per stage, the number of entries of each of its params."""
        return [[p.numel() for p in group] for group in self.stages]

    @cached_property
    def grad_dtype(self) -> torch.dtype:
        """The direction buffer's dtype: the params' one dtype, or the widest of several
        (`.grad` of the others is then a cast copy)."""
        dtypes = {p.dtype for p in self.params} or {torch.float32}
        return max(dtypes, key=lambda dtype: torch.finfo(dtype).bits)

    def gather_index(self, device: torch.device) -> Tensor:
        """The captured columns' positions in the flat vector, as an index on `device`."""
        cached = self._gathers.get(device)
        if cached is None:
            parts = [torch.arange(start, start + size) for start, size in self.sources]
            whole = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
            cached = self._gathers[device] = whole.to(device)
        return cached

    def grad_views(self, device: torch.device, dtype: torch.dtype) -> GradViews:
        """The direction's buffer on `device` in `dtype` and the params' views of it, made
        once: a step then assigns `.grad` without dispatching an op per parameter."""
        key = (device, dtype)
        cached = self._views.get(key)
        if cached is None:
            buffer = torch.zeros(self.width, device=device, dtype=dtype)
            views = [
                unflatten(buffer[start : start + p.numel()], p.shape, last)
                for p, start, last in zip(self.params, self.columns, self.last, strict=True)
            ]
            cached = self._views[key] = GradViews(buffer, views)
        return cached

    def average_scale(
        self, importances: Sequence[float], device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        """NormSGD's 1 / Σ_{i ∈ members} k_i for every column (0 where that sum is not
        positive), made once per set of importances: one multiply per step."""
        key = (tuple(importances), device, dtype)
        cached = self._scales.get(key)
        if cached is None:
            scale = torch.zeros(self.width, dtype=torch.float64)
            for members, spans in self.pattern_ranges.items():
                total = sum(importances[i] for i in members)
                for start, stop in spans:
                    scale[start:stop] = 1.0 / total if total > 0 else 0.0
            cached = self._scales[key] = scale.to(device=device, dtype=dtype)
        return cached

    @cached_property
    def _scales(self) -> dict[tuple[object, ...], Tensor]:
        return {}

    @cached_property
    def _gathers(self) -> dict[torch.device, Tensor]:
        return {}

    @cached_property
    def _views(self) -> dict[tuple[torch.device, torch.dtype], GradViews]:
        return {}

    def new_in(self, stage: int) -> list[torch.nn.Parameter]:
        """w_k \\ w_(k-1) for a 0-based stage: its params not in the previous stage."""
        if stage == 0:
            return list(self.stages[0])
        before = {id(p) for p in self.stages[stage - 1]}
        return [p for p in self.stages[stage] if id(p) not in before]


def _distinct_trainable(group: Sequence[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    seen: set[int] = set()
    unique = []
    for p in group:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def _memberships(
    stages: list[list[torch.nn.Parameter]],
) -> tuple[list[torch.nn.Parameter], list[list[int]], list[list[int]], dict[int, int]]:
    """Every distinct param in order of first appearance, the stages containing each, its
    slot in each of them, and where each param (by id) is in that order."""
    index: dict[int, int] = {}
    params: list[torch.nn.Parameter] = []
    members: list[list[int]] = []
    slots: list[list[int]] = []
    for i, group in enumerate(stages):
        for slot, p in enumerate(group):
            if id(p) not in index:
                index[id(p)] = len(params)
                params.append(p)
                members.append([])
                slots.append([])
            at = index[id(p)]
            members[at].append(i)
            slots[at].append(slot)
    return params, members, slots, index


def _place(
    params: list[torch.nn.Parameter], members: list[list[int]], positions: dict[int, int]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Each param's first column: captured params first, then the others, each part sorted
    by membership (the captured ones within it by flat position, the others by first
    appearance); and (flat position, size) of each captured param in column order."""
    order = sorted(
        range(len(params)),
        key=lambda at: (
            id(params[at]) not in positions,
            members[at],
            positions.get(id(params[at]), 0),
        ),
    )
    columns = [0] * len(params)
    width = 0
    sources = []
    for at in order:
        columns[at] = width
        width += params[at].numel()
        if id(params[at]) in positions:
            sources.append((positions[id(params[at])], params[at].numel()))
    return columns, sources


def _flat_positions(captured: Sequence[Tensor]) -> dict[int, int]:
    """Where each captured tensor begins in their flat vector (they follow each other)."""
    positions = {}
    offset = 0
    for tensor in captured:
        positions[id(tensor)] = offset
        offset += tensor.numel()
    return positions


def _runs(
    group: list[torch.nn.Parameter], index: dict[int, int], columns: list[int], captured: int
) -> list[Run]:
    """One stage's maximal contiguous column runs (never across the captured block's end)."""
    placed = sorted((columns[index[id(p)]], slot, p.numel()) for slot, p in enumerate(group))
    mine: list[Run] = []
    for start, slot, size in placed:
        if mine and mine[-1].stop == start and start != captured:
            last = mine[-1]
            mine[-1] = Run(last.start, start + size, (*last.slots, slot))
        else:
            mine.append(Run(start, start + size, (slot,)))
    return mine
