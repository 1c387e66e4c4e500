"""The compiled network on every shipped spec: the brief's invariants 1-5 and the public API.

1. nesting: params(D1) ⊂ params(D2) ⊂ ... ⊂ params(Dn)
2. state reuse: D_k's activations are the same inside D_k or any larger D_m
3. extraction: D_k built standalone gives stage k's output
4. sizes grow as the schedule says
5. anytime execution of stages 1..k costs FLOPs(D_k) plus the earlier heads, nothing recomputed
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
from spec_helpers import shipped_specs
from torch.utils.flop_counter import FlopCounterMode

import nestdsl
import nestdsl.cost
from nestdsl.schedule import expand

SPECS = shipped_specs()
IDS = [p.stem for p in SPECS]


@cache
def compiled(path: Path) -> nestdsl.NestedNet:
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path))
    return net.eval()


def sample(net: nestdsl.NestedNet, batch: int = 2) -> torch.Tensor:
    """Inputs of the spec's shape, shrunk for ImageNet-sized specs (the nets are convolutional
    with global pooling, so the invariants do not depend on the resolution)."""
    c, h, w = net.input_shape
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, c, min(h, 16), min(w, 16), generator=generator)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = max(1.0, float(b.detach().abs().max()))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale))


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_parameters_are_nested(path: Path) -> None:
    net = compiled(path)
    previous: set[int] = set()
    for k in range(1, net.num_stages + 1):
        params = net.stage_parameters(k)
        ids = {id(p) for p in params}
        assert previous < ids or (k == 1 and ids)
        assert (
            [id(p) for p in params[: len(previous)]] == [id(p) for p in net.stage_parameters(k - 1)]
            if k > 1
            else True
        )
        new = {id(p) for p in net.new_parameters(k)}
        assert new == ids - previous
        previous = ids
    assert previous == {id(p) for p in net.parameters()}


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_anytime_equals_joint_and_subnetworks_match_stages(path: Path) -> None:
    net = compiled(path)
    x = sample(net)
    with torch.no_grad():
        joint = net(x)
        anytime = list(net.anytime(x))
        assert len(joint) == len(anytime) == net.num_stages
        for k in range(1, net.num_stages + 1):
            assert joint[k - 1].shape == (x.shape[0], net.num_classes)
            assert close(anytime[k - 1], joint[k - 1])
            assert close(net.subnetwork(k)(x), joint[k - 1])


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_state_is_reused_across_stages(path: Path) -> None:
    """Units of D_k compute the same inside D_k, inside D_n, and whatever later stages hold."""
    net = compiled(path)
    x = sample(net)
    with torch.no_grad():
        full = net.activations(x)
        for k in range(1, net.num_stages):
            inside = net.subnetwork(k).net.activations(x)
            own_head = net.ir.heads[k - 1]
            assert set(inside) == {
                u
                for u in full
                if net.ir.stage(u) <= k and (u[0] == own_head or u[0] not in net.ir.heads)
            }
            for unit, value in inside.items():
                assert close(value, full[unit]), unit
        # Perturbing every later-stage parameter leaves stage-1 units untouched.
        perturbed = nestdsl.compile(net.ir).eval()
        perturbed.load_state_dict(net.state_dict())
        for k in range(2, net.num_stages + 1):
            for p in perturbed.new_parameters(k):
                p.add_(0.01 * torch.randn_like(p))
        after = perturbed.activations(x)
        for unit, value in full.items():
            if net.ir.stage(unit) == 1:
                assert torch.equal(after[unit], value), unit


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_sizes_grow_as_the_schedule_says(path: Path) -> None:
    net = compiled(path)
    spec = nestdsl.load(path)
    plan = expand(spec.schedule)
    costs = nestdsl.stage_costs(net.ir)
    for k, cost in enumerate(costs, start=1):
        assert cost.params == sum(p.numel() for p in net.subnetwork(k).parameters())
        assert cost.anytime_params == sum(p.numel() for p in net.stage_parameters(k))
        share = sum(
            r for r, s in zip(plan.stripe_ratios, plan.stripe_stages, strict=True) if s <= k
        )
        for layer in net.ir.layers.values():
            if layer.op in ("conv", "add") and layer.stage <= k and not layer.id.startswith("exit"):
                present = sum(
                    c for c, s in zip(layer.stripes, layer.stripe_stages, strict=True) if s <= k
                )
                assert present * plan.width_units == layer.channels * share, layer.id
        if not plan.cascade:
            level = plan.level_of_stage(k)
            for block in spec.blocks:
                layers = [
                    layer
                    for layer in net.ir.layers.values()
                    if layer.block == block.name
                    and ".trans" not in layer.id
                    and layer.id.count(".") == 1
                    and layer.stage <= k
                ]
                if block.kind in ("sparse_resnet", "sparsenet"):
                    assert len(layers) == block.count // 2 ** (plan.depth_levels - level)
    assert [c.params for c in costs] == sorted(c.params for c in costs)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_anytime_costs_only_new_units(path: Path) -> None:
    """Counting the FLOPs anytime execution really performs (torch's own FLOP counter)."""
    net = compiled(path)
    c, h, w = net.input_shape
    costs = nestdsl.stage_costs(net.ir)
    counter = FlopCounterMode(display=False)
    measured = []
    with torch.no_grad(), counter:
        for _ in net.anytime(torch.randn(1, c, h, w)):
            measured.append(counter.get_total_flops())
    for k in range(1, net.num_stages + 1):
        incremental = sum(cost.incremental_flops for cost in costs[:k])
        assert measured[k - 1] == 2 * incremental  # torch counts a multiply-add as 2 FLOPs
        heads_before = sum(
            nestdsl.cost.unit_flops(net.ir, (head, 0)) for head in net.ir.heads[: k - 1]
        )
        assert incremental == costs[k - 1].flops + heads_before


def test_training_mode_anytime_matches_joint() -> None:
    path = Path(__file__).parent.parent / "specs" / "digits_width_depth.nest"
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path)).train()
    x = torch.randn(8, *net.input_shape)
    for a, b in zip(net(x), net.anytime(x), strict=True):
        assert close(b, a)


def test_stage_gradients_reach_only_their_subnetwork() -> None:
    path = Path(__file__).parent.parent / "specs" / "digits_width.nest"
    net = nestdsl.compile(nestdsl.load(path))
    x = torch.randn(4, *net.input_shape)
    first = next(net.anytime(x))
    grads = torch.autograd.grad(first.sum(), net.parameters(), allow_unused=True)
    inside = {id(p) for p in net.stage_parameters(1)}
    for p, g in zip(net.parameters(), grads, strict=True):
        assert (g is not None) == (id(p) in inside)


def test_stage_out_of_range_is_a_clear_error() -> None:
    path = Path(__file__).parent.parent / "specs" / "digits_width.nest"
    net = nestdsl.compile(nestdsl.load(path))
    with pytest.raises(ValueError, match=r"stage must be in 1\.\.3"):
        net.subnetwork(4)


def test_within_a_deadline_returns_the_last_finished_stage() -> None:
    path = Path(__file__).parent.parent / "specs" / "digits_width.nest"
    net = nestdsl.compile(nestdsl.load(path)).eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        result = net.within(x, seconds=60.0)
        assert result.stage == net.num_stages and result.logits is not None
        assert close(result.logits, net(x)[-1])
        missed = net.within(x, seconds=0.0)
        assert (missed.stage, missed.logits) == (0, None)


@pytest.mark.parametrize("spec", ["digits_width_depth", "sparse_resnet98_eann"])
def test_dropping_rows_between_stages_equals_running_the_kept_rows_alone(spec: str) -> None:
    path = Path(__file__).parent.parent / "specs" / f"{spec}.nest"
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(path)).eval()
    x = torch.randn(6, *net.input_shape)
    rows = torch.tensor([True, False, True, True, False, True])
    with torch.no_grad():
        state = net.start(x)
        first = net.advance(state)
        state.keep(rows)
        later = [net.advance(state) for _ in range(net.num_stages - 1)]
        alone = list(net.anytime(x[rows]))
    assert first.shape[0] == 6 and state.batch == 4
    for a, b in zip(later, alone[1:], strict=True):
        assert close(a, b)
    with pytest.raises(ValueError, match="already run"):
        net.advance(state)


@pytest.mark.parametrize("spec", ["digits_width_depth", "sparse_resnet98_alternating"])
def test_anytime_combines_each_summed_input_once(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Sparse ResNet layer's input is a sum of earlier layers, stripe by stripe; later
    stages read the earlier stripes' sums again and must not add them up afresh. Each sum
    is freed once no later stage reads it."""
    import nestdsl.compiler.network as network

    net = compiled(Path(__file__).parent.parent / "specs" / f"{spec}.nest")
    summed: list[tuple[int, ...]] = []

    def spy(agg: str, inputs: list[torch.Tensor]) -> torch.Tensor:
        if len(inputs) > 1:
            summed.append(tuple(id(t) for t in inputs))
        return nestdsl.compiler.ops.combine(agg, inputs)

    monkeypatch.setattr(network, "combine", spy)
    with torch.no_grad():
        state = net.start(sample(net))
        held = []
        for _ in range(net.num_stages):
            net.advance(state)
            held.append(len(state.sums))
    assert summed and len(set(summed)) == len(summed)
    assert held[0] > 0 and held[-1] == 0
