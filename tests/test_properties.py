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
    check_invariants(spec)


def check_invariants(spec: Spec) -> None:
    """The brief's invariants 1-5 on one spec."""
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


LINES = [
    "conv channels={c} kernel=1",
    "conv channels={c} kernel=3 stride=1",
    "conv depthwise=true",
    "conv channels=in kernel=1 bias=true",
    "bn",
    "relu",
    "relu6",
    "silu",
    "avgpool kernel=3 stride=1 padding=1",
    "maxpool kernel=3 stride=1 padding=1",
    "dropout p=0.1",
    "bn\n  se squeeze={h}",  # a layer first: `se` gates one layer, not an aggregate (E410)
    "relu\n  se reduction=2 act=silu gate=hardsigmoid",
]


@st.composite
def unit_specs(draw: st.DrawFn) -> str:
    """A `nest 2` spec with a random unit, random connections and a random schedule."""
    widths = draw(st.integers(0, 2))
    depth = draw(st.booleans())
    steps = ["width"] * widths + (["depth"] if depth else [])
    steps = draw(st.permutations(steps))
    units = 2**widths  # the sum of the stripe ratios of `width * widths`
    c = units * draw(st.sampled_from([2, 4]))
    body = [draw(st.sampled_from(LINES)) for _ in range(draw(st.integers(0, 3)))]
    body.append("conv channels={c}")  # sums need every unit to end at the block's width
    body += draw(st.lists(st.sampled_from(["bn", "relu", "gelu"]), max_size=2))
    connect = draw(st.sampled_from(["sparse", "dense"] if depth else ["chain", "sparse", "dense"]))
    shortcut = (
        draw(st.sampled_from(["none", "auto", "projection"])) if connect == "chain" else "none"
    )
    agg = draw(st.sampled_from(["sum", "concat"]))
    count = 2 * draw(st.integers(1, 2)) if depth else draw(st.integers(1, 3))
    lines = "\n".join("  " + line.format(c=c, h=c // 2) for line in body)
    schedule = f"schedule ({', '.join(steps)},)" if steps else ""
    return f"""nest 2
unit u out shortcut={shortcut}
{lines}
end
input shape=(1, 8, 8)
stem conv channels={c}
block b1 u count={count} out={c} connect={connect} agg={agg} width={c}
block b2 u count={count} out={c} connect={connect} agg={agg} width={c} stride=2
head classes=3
{schedule}
"""


@PROPERTY
@given(unit_specs())
def test_random_unit_specs_satisfy_the_invariants(text: str) -> None:
    """Invariants 1-5 on random units, connections and schedules, and 6: no dead units."""
    import networkx as nx

    spec = nestdsl.loads(text, "random.nest")
    ir = nestdsl.build_ir(spec)
    for k, head in enumerate(ir.heads, start=1):
        reaching = nx.ancestors(ir.graph, (head, 0))
        alive = [u for u in ir.graph if ir.stage(u) <= k and u[0] not in ir.heads]
        assert all(u in reaching for u in alive)
    check_invariants(spec)


def test_channelwise_layers_over_concatenations_keep_stripes() -> None:
    """Pre-activation dense blocks under width nesting: a BN over a concatenation of split
    layers reads stripe j of each, gathered stripe by stripe in joint execution too."""
    text = """nest 2
unit u out
  bn
  relu
  conv channels=out
end
unit final
  bn
  relu
end
input shape=(1, 8, 8)
stem conv channels=8
block b1 u count=3 out=8 connect=dense
block f final count=1
head classes=3
schedule width * 2
"""
    spec = nestdsl.loads(text, "dense_width.nest")
    net = nestdsl.compile(spec)
    assert net.op("b1.3.bn1").order is not None
    check_invariants(spec)


def test_layernorm_nests_by_depth() -> None:
    """LayerNorm is refused under width nesting (E407, a golden) but nests by depth."""
    text = """nest 2
unit block_ln out
  conv depthwise=true kernel=7
  layernorm
  conv channels=4 * out kernel=1
  gelu
  conv channels=out kernel=1
end
input shape=(3, 16, 16)
stem conv channels=16
block b1 block_ln count=2 out=16 connect=sparse
head classes=10
schedule depth
"""
    spec = nestdsl.loads(text, "layernorm_depth.nest")
    assert any(layer.op == "layernorm" for layer in nestdsl.build_ir(spec).layers.values())
    check_invariants(spec)


def test_se_flatten_and_linear_nest_by_width() -> None:
    """SE inside a unit and an MLP of `flatten` and `linear` under width nesting: the SE's
    fully connected layers are lower-triangular (its squeeze width split into stripes too),
    its gate multiplies stripe j by stripe j, and flatten keeps stripe j's channels."""
    text = """nest 2
unit mb out expand=2 stride=1 shortcut=auto
  conv channels=in * expand kernel=1
  bn
  hardswish
  conv depthwise=true stride=stride
  bn
  se squeeze=max(4, in // 2) gate=hardsigmoid
  conv channels=out kernel=1
  bn
end
unit mlp hidden
  avgpool size=2
  flatten
  linear features=hidden
  bn
  relu
end
input shape=(1, 8, 8)
stem conv channels=8
block b1 mb count=2 out=8
block b2 mb count=1 out=16 stride=2
block f mlp count=1 hidden=32
head classes=3
schedule width * 2
"""
    spec = nestdsl.loads(text, "se_mlp.nest")
    ir = nestdsl.build_ir(spec)
    assert ir.layers["b1.1.se1.squeeze"].stripes == (1, 1, 2)
    assert ir.kept_inputs(("b1.1.se1.squeeze", 1)) == [("b1.1.se1.pool", 0), ("b1.1.se1.pool", 1)]
    assert ir.kept_inputs(("b1.1.se1.excite", 0)) == [("b1.1.se1.squeeze", 0)]
    assert ir.kept_inputs(("b1.1.se1.gate", 2)) == [("b1.1.conv2", 2), ("b1.1.se1.excite", 2)]
    flatten = ir.layers["f.1.flatten1"]
    assert flatten.stripes == (16, 16, 32) and flatten.size == (1, 1)
    assert ir.kept_inputs((flatten.id, 1)) == [("f.1.avgpool1", 1)]
    check_invariants(spec)
