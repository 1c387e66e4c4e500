"""`StageLayout`: memberships, columns, runs, and the captured block `fill_grad` gathers."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nestdsl.memory_order import flatten
from nestdsl.optim.layout import StageLayout

FIRST_STAGES = st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=12)


def nested(first_stages: list[int]) -> tuple[list[nn.Parameter], list[list[nn.Parameter]]]:
    """Param j enters at stage first_stages[j] and stays (nested stages, as D_1 ⊂ D_2 ...)."""
    params = [nn.Parameter(torch.randn(j + 1)) for j in range(len(first_stages))]
    stages = [[p for p, k in zip(params, first_stages, strict=True) if k <= i] for i in range(4)]
    return params, stages


def covered(spans: list[tuple[int, int]]) -> list[int]:
    return [column for start, stop in spans for column in range(start, stop)]


@given(FIRST_STAGES, st.sets(st.integers(min_value=0, max_value=11)))
def test_columns_runs_and_pattern_ranges_cover_what_they_name(
    first_stages: list[int], captured_at: set[int]
) -> None:
    params, stages = nested(first_stages)
    captured = [p for j, p in enumerate(params) if j in captured_at]
    layout = StageLayout.build(stages, captured)
    taken = {id(p) for p in captured}
    own = {
        id(p): list(range(start, start + p.numel()))
        for p, start in zip(layout.params, layout.columns, strict=True)
    }
    assert sorted(c for cols in own.values() for c in cols) == list(range(layout.width))
    assert layout.captured == sum(p.numel() for p in captured)  # every param is in a stage
    assert all(
        (start < layout.captured) == (id(p) in taken)
        for p, start in zip(layout.params, layout.columns, strict=True)
    )
    for i, group in enumerate(layout.stages):
        spans = [(run.start, run.stop) for run in layout.runs[i]]
        assert covered(spans) == sorted(c for p in group for c in own[id(p)])
        for run in layout.runs[i]:
            named = [c for slot in run.slots for c in own[id(group[slot])]]
            assert named == list(range(run.start, run.stop))
            assert run.stop <= layout.captured or run.start >= layout.captured
        outside = sorted(
            c
            for p in layout.params
            if id(p) not in {id(q) for q in group} and id(p) in taken
            for c in own[id(p)]
        )
        assert covered(layout.blanks[i]) == outside
    for members, group in layout.patterns.items():
        assert sorted(covered(layout.pattern_ranges[members])) == sorted(
            c for at in group for c in own[id(layout.params[at])]
        )
        assert len(layout.pattern_ranges[members]) <= 2


@given(FIRST_STAGES)
def test_one_gather_of_the_flat_vector_fills_the_captured_columns(first_stages: list[int]) -> None:
    params, stages = nested(first_stages)
    frozen = nn.Parameter(torch.randn(3), requires_grad=False)  # captured, in no layout column
    captured = [params[-1], frozen, *params[:-1]]
    layout = StageLayout.build(stages, captured)
    flat = torch.cat([flatten(p.detach(), False) for p in captured])
    block = flat[layout.gather_index(flat.device)]
    for p, start in zip(layout.params, layout.columns, strict=True):
        assert torch.equal(block[start : start + p.numel()], p.detach())


def test_grad_views_carry_each_parameters_strides() -> None:
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    layout = StageLayout.build([[conv.weight], [conv.weight, conv.bias]])
    views = layout.grad_views(torch.device("cpu"), torch.float32)
    assert layout.grad_views(torch.device("cpu"), torch.float32) is views  # made once
    for p, view in zip(layout.params, views.views, strict=True):
        assert view.stride() == p.stride() and view.data_ptr() >= views.buffer.data_ptr()
