"""`nestdsl.load_run` and weight loading (nestdsl/trained.py): a run back as Python objects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import nestdsl
from nestdsl.diagnostics import NestError
from nestdsl.train import TrainConfig, train
from nestdsl.trained import load_weights

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_toy import states_equal, write_tiny_spec

pytestmark = pytest.mark.usefixtures("single_thread")
FAST = {"data": "synthetic:64", "epochs": 1, "batch_size": 32, "device": "cpu"}


@pytest.mark.parametrize("standalone", [None, 2])
def test_load_run_gives_the_trained_network_config_and_results(tmp_path, standalone) -> None:
    config = TrainConfig(**FAST, standalone=standalone)
    result = train(write_tiny_spec(tmp_path), config, tmp_path / "run", progress=False)
    run = nestdsl.load_run(tmp_path / "run")
    assert run.config == config
    assert run.results.stages == result.stages and run.results.params == result.params
    assert states_equal(run.net.state_dict(), result.net.state_dict())
    assert not run.net.training
    x = torch.randn(3, *result.net.input_shape)
    result.net.eval()
    ours, theirs = run.net(x), result.net(x)
    if standalone is None:
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    else:
        assert torch.equal(ours, theirs)


def test_load_run_of_an_unfinished_run(tmp_path) -> None:
    with pytest.raises(NestError, match="E904"):
        nestdsl.load_run(tmp_path)


def test_weights_of_another_network_name_what_differs(tmp_path) -> None:
    spec = write_tiny_spec(tmp_path)
    net = nestdsl.compile(nestdsl.load(spec))
    weights = tmp_path / "w.pt"
    state = dict(net.state_dict())
    state.pop(next(iter(state)))
    state["extra"] = torch.zeros(1)
    torch.save(state, weights)
    with pytest.raises(NestError) as info:
        load_weights(net, weights)
    notes = info.value.diagnostics[0].notes
    assert notes[0].startswith("1 tensor missing") and notes[1].startswith("1 tensor unexpected")
