"""NormSGD membership by loss path, as the engine passes it to the optimizer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from train_toy import write_tiny_spec

import nestdsl
from nestdsl.train.batch_step import StepPlan, train_step
from nestdsl.train.devices import Runtime
from nestdsl.train.engine import loss_memberships

C = 0.01


def test_sgd_norm_does_not_divide_an_earlier_heads_update(tmp_path) -> None:
    """Head 1 is reached by L_1 only: its NormSGD update is s_1 g_1, not s_1 g_1 / n."""
    torch.manual_seed(0)
    net = nestdsl.compile(nestdsl.load(write_tiny_spec(tmp_path)))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    members = loss_memberships(net)
    head = list(net.op(net.ir.heads[0]).parameters())
    loss_1 = F.cross_entropy(next(iter(net.anytime(x))), y)
    grads = torch.autograd.grad(loss_1, members[0], allow_unused=True)
    norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))
    scale = math.sqrt(sum(p.numel() for p in members[0])) * C / norm
    by_id = {id(p): g for p, g in zip(members[0], grads, strict=True)}
    expected = [scale * by_id[id(p)] for p in head]
    plan = StepPlan(
        "anytime",
        net,
        "sgd-norm",
        members,
        torch.optim.SGD(net.parameters(), lr=0.0),
        norm_constant=C,
    )
    train_step(plan, Runtime(torch.device("cpu"), None, False), x, y)
    for p, want in zip(head, expected, strict=True):
        torch.testing.assert_close(p.grad, want.to(p.dtype), rtol=1e-4, atol=1e-7)
    assert all(not any(p is q for q in members[k]) for p in head for k in (1, 2))
