"""Distributed evaluation and BatchNorm: sharded metrics and global-batch statistics."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from train_toy import make_toy

from nestdsl.evaluate import StageMetrics
from nestdsl.train import distributed, launch, train
from nestdsl.train.config import make_config
from nestdsl.train.loaders import Shard


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of one: the collectives run, the maths is checked against torch."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (5, 3)])
def test_synced_batch_norm_is_batch_norm_on_one_rank(one_rank_group, shape) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    weight = torch.rand(3, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    stats = [torch.randn(3), torch.rand(3) + 0.5]
    ours = [t.clone() for t in stats]
    expected = F.batch_norm(x, *stats, weight, bias, True, 0.1, 1e-5)
    with distributed.synced_batchnorm(True):
        got = F.batch_norm(x, *ours, weight, bias, True, 0.1, 1e-5)
        held = F.batch_norm(x, *ours, weight, bias, False, 0.1, 1e-5)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(held, F.batch_norm(x, *ours, weight, bias, False, 0.1, 1e-5))
    for mine, theirs in zip(ours, stats, strict=True):
        torch.testing.assert_close(mine, theirs)
    grads = torch.autograd.grad((got * got.detach()).sum(), [x, weight, bias])
    want = torch.autograd.grad((expected * expected.detach()).sum(), [x, weight, bias])
    for mine, theirs in zip(grads, want, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_synced_batchnorm_is_off_outside_a_process_group() -> None:
    with distributed.synced_batchnorm(True):
        assert not torch.overrides._is_torch_function_mode_enabled()


def test_shards_cover_every_sample_once() -> None:
    shards = [list(Shard(10, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert [len(Shard(10, rank, 3)) for rank in range(3)] == [4, 3, 3]
    assert list(Shard(2, 2, 3)) == []


def test_metrics_of_shards_combine_to_the_whole(one_rank_group) -> None:
    shard = [StageMetrics(1, "x", top1=0.5, top5=0.75, loss=2.0, count=4)]
    (whole, empty) = distributed.combine_metrics(shard, ["w1", "w2"], 1, torch.device("cpu"))
    assert whole == StageMetrics(1, "w1", top1=0.5, top5=0.75, loss=2.0, count=4)
    assert empty == StageMetrics(2, "w2", top1=0.0, top5=0.0, loss=0.0, count=0)


@pytest.mark.slow
def test_two_processes_with_sync_bn_match_one_process(tmp_path) -> None:
    """With --sync-bn two processes normalize with the whole batch's statistics, so they
    train (BatchNorm running statistics included) what one process trains, and their sharded
    validation finds the one-process metrics."""
    cfg = make_config(
        data="synthetic:128",
        batch_size=32,
        lr=0.05,
        epochs=1,
        strategy="osgd",
        device="cpu",
        schedule="constant",
        sync_bn=True,
    )
    single = make_toy(batchnorm=True)
    one = train(single, cfg, tmp_path / "one", progress=False)
    two = launch(
        2, functools.partial(make_toy, batchnorm=True), cfg, tmp_path / "two", progress=False
    )
    both = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(both[name], value, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(two.stages, one.stages, strict=True):
        assert mine.count == theirs.count == 32
        assert mine.top1 == pytest.approx(theirs.top1) and mine.loss == pytest.approx(theirs.loss)
    for path in ("one", "two"):
        assert json.loads((tmp_path / path / "config.json").read_text())["config"]["sync_bn"]
