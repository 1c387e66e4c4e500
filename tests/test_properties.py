"""Property tests: the brief's invariants over random small specs and schedules.

Random widths, depths, block kinds, numbers of stages and orders of growth steps; every
generated spec must compile and satisfy nesting, state reuse, extraction, sizes and cost.
"""

from __future__ import annotations

import itertools

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_helpers import small_spec
from torch.utils.flop_counter import FlopCounterMode

import nestdsl
from nestdsl.ast import Spec

STEP_TEXT = {"w": "width", "e": "even_width", "d": "depth", "wd": "width + depth"}


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    cascade = draw(st.booleans()) and draw(st.booleans())
    if cascade:
        steps = ["cascade"] * draw(st.integers(1, 3))
    else:
        keys = draw(st.lists(st.sampled_from(sorted(STEP_TEXT)), min_size=0, max_size=3))
        # even_width and width in one schedule are allowed; keep the net small anyway
        steps = [STEP_TEXT[k] for k in keys]
    schedule = ", ".join(f"({s})" for s in steps)
    schedule = f"({schedule},)" if steps else ""
    ratios = [1]
    for step in steps:
        if step.startswith("width"):
            ratios.append(sum(ratios))
        elif step == "even_width":
            ratios.append(1)
    plan_units = sum(ratios)
    levels = 1 + sum("depth" in s or s == "cascade" for s in steps)
    depth = any("depth" in s for s in steps)
    kinds = (
        ["sparse_resnet", "sparsenet"]
        if depth
        else ["plain", "basic", "bottleneck", "sparse_resnet", "sparsenet"]
    )
    blocks = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(kinds))
        count = (
            2 ** (levels - 1) * draw(st.integers(1, 2))
            if depth or kind.startswith("sparse")
            else draw(st.integers(1, 2))
        )
        if cascade:
            count = 2 ** (levels - 1) * draw(st.integers(1, 2))
        width = plan_units * draw(st.integers(1, 2)) * (2 if plan_units < 4 else 1)
        blocks.append((kind, count, width, draw(st.sampled_from([1, 2]))))
    stem = plan_units * draw(st.integers(1, 2)) * (2 if plan_units < 4 else 1)
    return small_spec(blocks, schedule, stem=stem, size=8)


PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(specs())
def test_random_specs_satisfy_the_invariants(spec: Spec) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(spec).eval()
    n = net.num_stages
    assert n == len(spec.schedule.steps) + 1
    x = torch.randn(2, *net.input_shape)

    # 1. nesting
    for k in range(1, n):
        small = {id(p) for p in net.stage_parameters(k)}
        large = {id(p) for p in net.stage_parameters(k + 1)}
        assert small < large

    with torch.no_grad():
        joint = net(x)
        full = net.activations(x)
        for k, out in enumerate(net.anytime(x), start=1):
            assert torch.allclose(out, joint[k - 1], rtol=1e-4, atol=1e-5)
            # 3. extraction and 2. state reuse
            sub = net.subnetwork(k)
            assert torch.allclose(sub(x), joint[k - 1], rtol=1e-4, atol=1e-5)
            for unit, value in sub.net.activations(x).items():
                assert torch.allclose(value, full[unit], rtol=1e-4, atol=1e-5)

    # 4. sizes: parameter counts from the IR match the modules, and grow
    costs = nestdsl.stage_costs(net.ir)
    for k, cost in enumerate(costs, start=1):
        assert cost.params == sum(p.numel() for p in net.subnetwork(k).parameters())
    assert all(a.anytime_params < b.anytime_params for a, b in itertools.pairwise(costs))

    # 5. cost: anytime execution performs exactly the incremental FLOPs
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        totals = [counter.get_total_flops() for _ in net.anytime(x[:1])]
    assert totals == [2 * sum(c.incremental_flops for c in costs[:k]) for k in range(1, n + 1)]


@PROPERTY
@given(specs())
def test_training_mode_anytime_matches_joint(spec: Spec) -> None:
    torch.manual_seed(0)
    net = nestdsl.compile(spec).train()
    x = torch.randn(4, *net.input_shape)
    for a, b in zip(net(x), net.anytime(x), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
