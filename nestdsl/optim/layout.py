"""Which parameter belongs to which subnetwork, keyed by Parameter identity.

`fill_grad` needs, for each distinct parameter, the stages whose subnetwork contains it (its
*membership*): that decides which gradient pieces enter the Gram matrix and NormSGD's
per-parameter average. It also places every parameter in one column order, grouped by
membership, so that each stage's gradient fills a few contiguous runs of a flat (n, D) matrix:
the number of copies per step depends on the number of membership patterns, not of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Run:
    """Columns [start, stop) of the flat matrix, filled by one stage's params at `slots`."""

    start: int
    stop: int
    slots: tuple[int, ...]


@dataclass(frozen=True)
class StageLayout:
    """Distinct trainable parameters in stage order and their memberships.

    stages[i]      the distinct trainable params of D_{i+1} (duplicates removed)
    params         every distinct param of any stage, in order of first appearance
    members[p]     0-based stages containing params[p], ascending
    slots[p]       for each member stage, the index of params[p] within stages[i]
    dims[i]        d_{i+1}: the number of scalars in D_{i+1}
    runs[i]        the contiguous column runs that stage i's gradient fills, in column order
    width          D: the number of columns (scalars of all distinct params)
    """

    stages: list[list[torch.nn.Parameter]]
    params: list[torch.nn.Parameter]
    members: list[list[int]]
    slots: list[list[int]]
    dims: list[int]
    runs: list[list[Run]]
    width: int

    @classmethod
    def build(cls, stage_params: Sequence[Sequence[torch.nn.Parameter]]) -> StageLayout:
        stages: list[list[torch.nn.Parameter]] = []
        for group in stage_params:
            seen: set[int] = set()
            unique = []
            for p in group:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    unique.append(p)
            stages.append(unique)
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
        dims = [sum(p.numel() for p in group) for group in stages]
        runs, width = _columns(stages, params, members, index)
        return cls(stages, params, members, slots, dims, runs, width)

    @cached_property
    def patterns(self) -> dict[tuple[int, ...], list[int]]:
        """Params (indices into `params`) grouped by their membership (0-based stages).

        Cached with `pattern_slots`: a training loop reuses one layout every step, and
        rebuilding these per step was a Python loop over every parameter and stage.
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for at, stages in enumerate(self.members):
            groups.setdefault(tuple(stages), []).append(at)
        return groups

    @cached_property
    def pattern_slots(self) -> dict[tuple[int, ...], dict[int, list[int]]]:
        """For each membership pattern and each member stage i, where the pattern's params
        sit in stage i's gradient list (the order of `stages[i]`), aligned with `patterns`."""
        return {
            members: {
                stage: [self.slots[at][self.members[at].index(stage)] for at in group]
                for stage in members
            }
            for members, group in self.patterns.items()
        }

    def new_in(self, stage: int) -> list[torch.nn.Parameter]:
        """w_k \\ w_(k-1) for a 0-based stage: its params not in the previous stage."""
        if stage == 0:
            return list(self.stages[0])
        before = {id(p) for p in self.stages[stage - 1]}
        return [p for p in self.stages[stage] if id(p) not in before]


def _columns(
    stages: list[list[torch.nn.Parameter]],
    params: list[torch.nn.Parameter],
    members: list[list[int]],
    index: dict[int, int],
) -> tuple[list[list[Run]], int]:
    """Column offsets grouped by membership, and each stage's maximal contiguous runs."""
    offsets: dict[int, int] = {}
    width = 0
    for at in sorted(range(len(params)), key=lambda at: members[at]):
        offsets[at] = width
        width += params[at].numel()
    runs: list[list[Run]] = []
    for group in stages:
        placed = sorted((offsets[index[id(p)]], slot, p.numel()) for slot, p in enumerate(group))
        mine: list[Run] = []
        for start, slot, size in placed:
            if mine and mine[-1].stop == start:
                last = mine[-1]
                mine[-1] = Run(last.start, start + size, (*last.slots, slot))
            else:
                mine.append(Run(start, start + size, (slot,)))
        runs.append(mine)
    return runs, width
