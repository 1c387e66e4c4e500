"""`StageLayout`: memberships, column runs and the per-pattern tables `fill_grad` reuses."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nestdsl.optim.layout import StageLayout


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=12))
def test_pattern_slots_point_at_each_patterns_params(first_stages: list[int]) -> None:
    """Param j enters at stage first_stages[j] and stays (nested stages, as in D_1 ⊂ D_2 ...);
    for every pattern and member stage, the slots name the pattern's params in that stage."""
    params = [nn.Parameter(torch.randn(j + 1)) for j in range(len(first_stages))]
    stages = [[p for p, k in zip(params, first_stages, strict=True) if k <= i] for i in range(4)]
    layout = StageLayout.build(stages)
    assert layout.patterns is layout.patterns  # built once per layout, not per step
    seen = []
    for members, group in layout.patterns.items():
        assert sorted(layout.pattern_slots[members]) == list(members)
        for stage, slots in layout.pattern_slots[members].items():
            named = [id(layout.stages[stage][slot]) for slot in slots]
            assert named == [id(layout.params[at]) for at in group]
        seen += group
    assert sorted(seen) == list(range(len(layout.params)))
