"""Which parameter belongs to which subnetwork, keyed by Parameter identity.

`fill_grad` works per parameter instead of on a flattened (n, d) matrix, so it needs, for each
distinct parameter, the stages whose subnetwork contains it (its *membership*): that decides
which gradient pieces enter the Gram matrix and NormSGD's per-parameter average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StageLayout:
    """Distinct trainable parameters in stage order and their memberships.

    stages[i]      the distinct trainable params of D_{i+1} (duplicates removed)
    params         every distinct param of any stage, in order of first appearance
    members[p]     0-based stages containing params[p], ascending
    slots[p]       for each member stage, the index of params[p] within stages[i]
    dims[i]        d_{i+1}: the number of scalars in D_{i+1}
    """

    stages: list[list[torch.nn.Parameter]]
    params: list[torch.nn.Parameter]
    members: list[list[int]]
    slots: list[list[int]]
    dims: list[int]

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
        return cls(stages, params, members, slots, dims)

    def new_in(self, stage: int) -> list[torch.nn.Parameter]:
        """w_k \\ w_(k-1) for a 0-based stage: its params not in the previous stage."""
        if stage == 0:
            return list(self.stages[0])
        before = {id(p) for p in self.stages[stage - 1]}
        return [p for p in self.stages[stage] if id(p) not in before]
