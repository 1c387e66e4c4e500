"""`fill_grad` on a toy nested MLP: same `.grad` as `combine` on zero-padded gradients."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nestdsl.optim import combine, fill_grad, stage_backward

COMBINING = ("sgd", "sgd-norm", "osgd", "osgd-norm")


class ToyNested(nn.Module):
    """Width-nested MLP: stage k adds hidden units and a head reading all units so far.

    D_k = blocks 1..k + heads 1..k, so the stage parameter lists are nested prefixes (and
    head j < k belongs to D_k without receiving gradient from L_k, like the real compiler).
    """

    def __init__(self, n: int = 3, inputs: int = 5, width: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(inputs, width) for _ in range(n))
        self.trunk = nn.Linear(inputs, inputs)  # shared by every stage
        self.heads = nn.ModuleList(nn.Linear(width * (k + 1), classes) for k in range(n))
        self.unrelated = nn.Parameter(torch.ones(2))  # in no stage: must stay untouched
        self.n = n

    def stage_parameters(self, k: int) -> list[nn.Parameter]:
        params = list(self.trunk.parameters())
        for j in range(k):
            params += list(self.blocks[j].parameters()) + list(self.heads[j].parameters())
        return params

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = torch.tanh(self.trunk(x))
        hidden = [torch.tanh(block(x)) for block in self.blocks]
        return [self.heads[k](torch.cat(hidden[: k + 1], dim=1)) for k in range(self.n)]


def make(n=3, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    net = ToyNested(n).to(dtype)
    x = torch.randn(16, 5, dtype=dtype)
    y = torch.randint(0, 4, (16,))
    return net, x, y


def losses_of(net, x, y):
    return [nn.functional.cross_entropy(out.float(), y) for out in net(x)]


def stage_lists(net):
    return [net.stage_parameters(k + 1) for k in range(net.n)]


def padded_grads(net, x, y) -> tuple[torch.Tensor, list[int]]:
    """Explicit (n, d) matrix: g_i zero-padded over all params in stage order, plus dims."""
    stages = stage_lists(net)
    everything = stages[-1]
    rows = []
    for i, loss in enumerate(losses_of(net, x, y)):
        mine = {id(p) for p in stages[i]}
        found = torch.autograd.grad(loss, everything, allow_unused=True, retain_graph=True)
        row = [
            (g if g is not None and id(p) in mine else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(found, everything, strict=True)
        ]
        rows.append(torch.cat(row).double())
    dims = [sum(p.numel() for p in stage) for stage in stages]
    return torch.stack(rows), dims


def flat_grad(params) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1).double() for p in params])


@pytest.mark.parametrize("strategy", COMBINING)
@pytest.mark.parametrize("priority", [None, (3, 1, 2)])
def test_fill_grad_matches_combine(strategy, priority):
    net, x, y = make()
    matrix, dims = padded_grads(net, x, y)
    k = [1.0, 2.0, 0.5]
    expected = combine(
        matrix, strategy, priority, importances=k, dims=dims, norm_constant=0.7
    ).float()
    info = fill_grad(
        losses_of(net, x, y),
        stage_lists(net),
        strategy,
        priority,
        importances=k,
        norm_constant=0.7,
    )
    got = flat_grad(stage_lists(net)[-1]).float()
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    assert net.unrelated.grad is None
    assert info.strategy == strategy
    assert all(isinstance(v, float) for v in info.coefficients)
    if strategy != "sgd":
        norms = matrix.norm(dim=1).tolist()
        assert info.grad_norms == pytest.approx(norms, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 4),
    strategy=st.sampled_from(COMBINING),
    data=st.data(),
)
def test_fill_grad_matches_combine_random(seed, n, strategy, data):
    net, x, y = make(n, seed)
    priority = data.draw(st.permutations(list(range(1, n + 1))))
    matrix, dims = padded_grads(net, x, y)
    expected = combine(matrix, strategy, priority, dims=dims).float()
    fill_grad(losses_of(net, x, y), stage_lists(net), strategy, priority)
    got = flat_grad(stage_lists(net)[-1]).float()
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)


def test_fill_grad_overwrites_existing_grad():
    net, x, y = make()
    for p in net.parameters():
        p.grad = torch.full_like(p, 123.0)
    fill_grad(losses_of(net, x, y), stage_lists(net), "osgd")
    first = flat_grad(stage_lists(net)[-1])
    fill_grad(losses_of(net, x, y), stage_lists(net), "osgd")
    assert torch.allclose(flat_grad(stage_lists(net)[-1]), first)
    assert torch.equal(net.unrelated.grad, torch.full((2,), 123.0))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_greedy_touches_only_new_params(stage):
    net, x, y = make()
    stages = stage_lists(net)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    new = [p for p in stages[stage - 1] if stage == 1 or all(p is not q for q in stages[stage - 2])]
    expected = torch.autograd.grad(losses_of(net, x, y)[stage - 1], new, allow_unused=True)
    info = fill_grad(losses_of(net, x, y), stages, "greedy", active_stage=stage)
    new_ids = {id(p) for p in new}
    for p in stages[-1]:
        if id(p) not in new_ids:
            assert p.grad is None
    for p, g in zip(new, expected, strict=True):
        assert torch.allclose(p.grad, g if g is not None else torch.zeros_like(p))
    assert info.active_stage == stage
    assert torch.equal(net.unrelated.grad, torch.ones(2))


def test_reduce_is_applied_before_combination():
    net, x, y = make()
    calls = []

    def fake_all_reduce(flat: torch.Tensor) -> torch.Tensor:
        calls.append(flat.shape)
        return flat * 3.0

    matrix, dims = padded_grads(net, x, y)
    for strategy in ("osgd", "osgd-norm", "sgd-norm", "sgd", "greedy"):
        calls.clear()
        fill_grad(
            losses_of(net, x, y),
            stage_lists(net),
            strategy,
            reduce=fake_all_reduce,
            active_stage=2 if strategy == "greedy" else None,
        )
        if strategy == "greedy":
            assert len(calls) == 1
            continue
        expected = combine(matrix * 3.0, strategy, dims=dims).float()
        got = flat_grad(stage_lists(net)[-1]).float()
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), strategy
        assert all(len(shape) == 1 for shape in calls)
        assert len(calls) == (1 if strategy == "sgd" else 3)


def test_unused_and_frozen_params():
    net, x, y = make()
    net.blocks[2].weight.requires_grad_(False)
    losses = losses_of(net, x, y)
    fill_grad(losses, stage_lists(net), "osgd")
    assert net.blocks[2].weight.grad is None
    # Head 1 belongs to D_2 and D_3 but only L_1 reaches it: still a finite gradient.
    assert torch.isfinite(net.heads[0].weight.grad).all()


def test_loss_without_grad_and_single_stage():
    net, x, y = make(n=1)
    fill_grad(losses_of(net, x, y), stage_lists(net), "osgd-norm")
    assert all(torch.isfinite(p.grad).all() for p in stage_lists(net)[0])
    net, x, y = make(n=2)
    losses = losses_of(net, x, y)
    losses[1] = losses[1].detach()
    info = fill_grad(losses, stage_lists(net), "osgd")
    assert info.skipped == [2]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("strategy", COMBINING)
def test_low_precision_params(dtype, strategy):
    net, x, y = make(dtype=dtype)
    fill_grad(losses_of(net, x, y), stage_lists(net), strategy)
    for p in stage_lists(net)[-1]:
        assert p.grad.dtype == dtype
        assert torch.isfinite(p.grad.float()).all()
    ref, x32, y32 = make(dtype=torch.float32)
    matrix, dims = padded_grads(ref, x32, y32)
    expected = combine(matrix, strategy, dims=dims).float()
    got = flat_grad(stage_lists(net)[-1]).float()
    assert torch.allclose(got, expected, atol=0.05, rtol=0.05)


OPTIMIZERS = {
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd-nesterov-wd": lambda ps: torch.optim.SGD(
        ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    ),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("strategy", [*COMBINING, "greedy"])
def test_composes_with_torch_optimizers(optimizer, strategy):
    net, x, y = make(seed=3)
    opt = OPTIMIZERS[optimizer](list(net.parameters()))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    stages = stage_lists(net)
    with torch.no_grad():
        before = [float(loss) for loss in losses_of(net, x, y)]
    for step in range(40):
        active = min(step // 14 + 1, 3) if strategy == "greedy" else None
        fill_grad(losses_of(net, x, y), stages, strategy, active_stage=active)
        opt.step()
        sched.step()
    with torch.no_grad():
        after = [float(loss) for loss in losses_of(net, x, y)]
    assert sum(after) < sum(before)
    assert torch.equal(net.unrelated.data, torch.ones(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("strategy", COMBINING)
def test_cuda_matches_cpu(strategy):
    net, x, y = make()
    fill_grad(losses_of(net, x, y), stage_lists(net), strategy)
    expected = flat_grad(stage_lists(net)[-1]).float()
    net, x, y = net.cuda(), x.cuda(), y.cuda()
    fill_grad(losses_of(net, x, y), stage_lists(net), strategy)
    got = flat_grad(stage_lists(net)[-1]).float().cpu()
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", COMBINING)
def test_overflow_is_visible(strategy):
    """An inf gradient (fp16 overflow) must not be silently skipped: .grad becomes non-finite."""
    net, x, y = make()
    losses = losses_of(net, x, y)
    losses[0] = losses[0] * torch.tensor(float("inf"))
    info = fill_grad(losses, stage_lists(net), strategy)
    assert not torch.isfinite(flat_grad(stage_lists(net)[-1])).all()
    if strategy != "sgd":
        assert info.nonfinite is True
    rows = torch.randn(2, 4)
    rows[0, 0] = float("inf")
    assert torch.isnan(combine(rows, strategy)).all()


def test_sgd_sum_is_n_times_sgd():
    """`sgd-sum` (Eq. 1 on the sum of the losses) is n × `sgd` in `combine` and `fill_grad`."""
    net, x, y = make()
    matrix, _ = padded_grads(net, x, y)
    k = [1.0, 2.0, 0.5]
    mean = combine(matrix, "sgd", importances=k)
    assert torch.allclose(combine(matrix, "sgd-sum", importances=k), 3 * mean)
    info = fill_grad(losses_of(net, x, y), stage_lists(net), "sgd-sum", importances=k)
    got = flat_grad(stage_lists(net)[-1]).float()
    assert torch.allclose(got, 3 * mean.float(), atol=1e-6, rtol=1e-5)
    assert info.strategy == "sgd-sum"
    assert info.coefficients == pytest.approx([3 * v / 3.5 for v in k])
    assert info.grad_norms == []


def test_a_network_trained_before_is_not_kept_alive() -> None:
    """`fill_grad` caches its layout (which holds the parameters) for the next step; the next
    network's step replaces it, so a process training one network after another frees each."""

    def step(net: ToyNested) -> None:
        losses = [out.square().mean() for out in net(torch.randn(2, 5))]
        fill_grad(losses, [net.stage_parameters(k) for k in range(1, net.n + 1)], "osgd")

    first = ToyNested()
    step(first)
    alive = weakref.ref(first.trunk.weight)
    del first
    step(ToyNested())
    gc.collect()
    assert alive() is None


def grads_of(net: nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def assert_same_grads(got: list[torch.Tensor | None], expected: list[torch.Tensor | None]) -> None:
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("strategy", ["sgd-norm", "osgd", "osgd-norm"])
def test_finish_combines_what_the_device_tensors_hold_when_it_is_called(strategy):
    """``finish`` reads nothing but the tensors ``stage_backward`` wrote: a CUDA graph replay
    rewrites them in place for a new batch, and the next ``finish`` must combine that batch's
    gradients, as often as it is called."""
    net, x, y = make()
    x2, y2 = torch.randn_like(x), torch.randint(0, 4, y.shape)
    fill_grad(losses_of(net, x2, y2), stage_lists(net), strategy)
    expected = grads_of(net)
    pending = stage_backward(losses_of(net, x, y), stage_lists(net), strategy)
    newer = stage_backward(losses_of(net, x2, y2), stage_lists(net), strategy)
    for mine, theirs in ((pending.rows, newer.rows), (pending.gram, newer.gram)):
        mine.copy_(theirs)
    first = pending.finish()
    assert pending.finish() == first and len(first.coefficients) == net.n
    assert_same_grads(grads_of(net), expected)


@pytest.mark.parametrize("strategy", [*COMBINING, "greedy"])
def test_fill_grad_is_stage_backward_then_finish(strategy):
    net, x, y = make()
    active = {"active_stage": 2} if strategy == "greedy" else {}
    report = fill_grad(losses_of(net, x, y), stage_lists(net), strategy, **active)
    expected = grads_of(net)
    net.zero_grad(set_to_none=True)
    pending = stage_backward(losses_of(net, x, y), stage_lists(net), strategy, **active)
    assert pending.finish() == report
    assert_same_grads(grads_of(net), expected)
