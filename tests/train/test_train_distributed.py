"""Two gloo processes on loopback train exactly what one process trains on the same batches.

The toy model has no BatchNorm: with BN each rank normalizes with its own half-batch
statistics, which legitimately differs from the full-batch run (see docs/training.md).
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
from train_toy import make_toy

from nestdsl.train import launch, train
from nestdsl.train.config import make_config


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path) -> None:
    cfg = make_config(
        data="synthetic:128",
        batch_size=32,
        lr=0.05,
        epochs=2,
        strategy="osgd-norm",
        device="cpu",
        schedule="constant",
    )
    single = make_toy()
    train(single, cfg, tmp_path / "one", progress=False)

    result = launch(2, functools.partial(make_toy), cfg, tmp_path / "two", progress=False)
    both = torch.load(tmp_path / "two" / "final.pt", weights_only=True)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(both[name], value, rtol=1e-4, atol=1e-5)
    assert [m.label for m in result.stages] == ["w1", "w2", "w4"]
    stored = json.loads((tmp_path / "two" / "config.json").read_text())
    assert stored["world_size"] == 2
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2, "only rank 0 writes"
