"""The step's numerics guard, AMP choice, device mapping and the asynchronous all-reduce."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
from train_toy import make_toy

from nestdsl.diagnostics import NestError
from nestdsl.profiling import DispatchCounter
from nestdsl.train import batch_step, devices, distributed, graphed, train
from nestdsl.train.batch_step import LossWatch
from nestdsl.train.config import make_config
from nestdsl.train.runs import load_tensors

FAST = {"data": "synthetic:128", "batch_size": 32, "lr": 0.05, "device": "cpu"}


def finite(n: int = 3) -> torch.Tensor:
    return torch.ones(n)


def test_loss_watch_names_the_first_bad_stage_and_step():
    watch = LossWatch()
    for step in range(4):
        watch.observe(finite(), step)
    watch.check()  # all finite: nothing to report
    watch.observe(torch.tensor([1.0, math.nan, math.inf]), 4)
    watch.observe(torch.tensor([math.inf, 1.0, 1.0]), 5)
    with pytest.raises(NestError, match=r"T018.*stage 2 became NaN or infinite at step 5"):
        watch.check()


def test_watching_a_step_costs_two_ops_whatever_the_stages():
    """A replayed step leaves the host about a dozen ops: the watch must not add many more."""
    for n in (3, 7):
        watch = LossWatch()
        losses = finite(n)
        watch.observe(losses, 0)
        with DispatchCounter() as counter:
            watch.observe(losses, 1)
        assert dict(counter.by_op) == {"aten.select.int": 1, "aten.copy_.default": 1}


def test_loss_watch_reads_periodically_and_offsets_standalone_stages():
    watch = LossWatch(first_stage=3)
    watch.observe(torch.tensor([math.nan]), 0)
    for step in range(1, batch_step.CHECK_EVERY - 1):
        watch.observe(finite(1), step)
    with pytest.raises(NestError, match="stage 3 became NaN or infinite at step 1"):
        watch.observe(finite(1), batch_step.CHECK_EVERY - 1)


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """Epoch 1 trains normally; a NaN loss in epoch 2 stops the run before its checkpoint."""
    real_step = batch_step.train_step
    calls = {"n": 0}

    def poisoned(plan, runtime, images, labels):
        losses = real_step(plan, runtime, images, labels)
        calls["n"] += 1
        if calls["n"] == 6:  # the second step of epoch 2 (4 steps per epoch)
            losses[1] = losses[1] * math.nan
        return losses

    monkeypatch.setattr(graphed, "train_step", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NestError, match=r"T018.*stage 2 .* at step 6"):
        train(make_toy(), make_config(**FAST, epochs=3, strategy="osgd"), run, progress=False)
    state = load_tensors(run / "checkpoint.pt")
    assert int(state["epochs_done"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_amp_auto_takes_bf16_only_where_native(monkeypatch, capability, dtype):
    monkeypatch.setattr(devices, "cuda_capability", lambda device: capability)
    assert devices._AMP["auto"](torch.device("cuda", 0)) == dtype
    assert devices._AMP["auto"](torch.device("cpu")) is None


def test_two_ranks_never_share_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(NestError, match=r"T014.*local rank 2 has no GPU of its own"):
        devices.resolve_device("auto", local_rank=2)


def test_async_mean_reduces_in_place_without_a_copy(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        reduce = distributed.AsyncMean()
        flat = torch.arange(4.0)
        assert reduce(flat) is flat
        second = torch.ones(3)
        reduce(second)
        reduce.wait()
        assert torch.equal(flat, torch.arange(4.0)) and torch.equal(second, torch.ones(3))
        assert reduce.started == []
    finally:
        dist.destroy_process_group()
