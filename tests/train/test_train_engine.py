"""The training engine on the toy nested model and on a tiny compiled spec."""

from __future__ import annotations

import math

import pytest
import torch
from train_toy import ToyNested, make_toy, states_equal, write_tiny_spec

from nestdsl.diagnostics import NestError
from nestdsl.train import TrainConfig, plan_phases, train
from nestdsl.train.batch_step import StepPlan, train_step
from nestdsl.train.config import make_config
from nestdsl.train.devices import Runtime
from nestdsl.train.schedules import OPTIMIZERS, build_optimizer, learning_rate

FAST = {"data": "synthetic:128", "batch_size": 32, "lr": 0.05, "device": "cpu", "epochs": 2}


def config(**overrides: object) -> TrainConfig:
    return make_config(**{**FAST, **overrides})


@pytest.mark.parametrize("strategy", ["sgd", "sgd-sum", "sgd-norm", "osgd", "osgd-norm", "greedy"])
def test_every_strategy_trains_the_toy_model(strategy: str) -> None:
    net = make_toy()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = train(net, config(strategy=strategy, epochs=3), progress=False)
    assert [m.label for m in result.stages] == ["w1", "w2", "w4"]
    assert result.params == [310, 660, 1350]
    assert all(math.isfinite(m.loss) and m.count == 32 for m in result.stages)
    assert len(result.history) == (9 if strategy == "greedy" else 3) and result.finished
    assert result.epochs_done == len(result.history)
    assert [m.count for m in result.test] == [32, 32, 32]  # the test split, after training
    assert not states_equal(before, net.state_dict())


def test_same_seed_same_weights_and_osgd_learns() -> None:
    nets = [make_toy(), make_toy()]
    learn = config(epochs=3, data="synthetic:256", schedule="constant")
    results = [train(net, learn, progress=False) for net in nets]
    assert states_equal(nets[0].state_dict(), nets[1].state_dict())
    assert results[0].stages[-1].top1 > 0.3  # chance is 0.1


def test_greedy_gives_every_stage_the_full_budget_and_freezes_finished_stages(tmp_path) -> None:
    assert [
        (p.stage, p.first_epoch, p.epochs)
        for p in plan_phases(config(strategy="greedy", epochs=7), 3)
    ] == [(1, 0, 7), (2, 7, 7), (3, 14, 7)]
    net = make_toy(batchnorm=True)
    cfg = config(strategy="greedy", epochs=1)
    first = train(net, cfg, tmp_path / "run", progress=False, until_epoch=1)
    assert not first.finished and first.history[0].stage == 1
    stage1 = [t.detach().clone() for t in [*net.new_parameters(1), *net.norms[0].buffers()]]
    stage2 = [p.detach().clone() for p in net.new_parameters(2)]
    probe = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        before = net.eval()(probe)[0]
    result = train(net, cfg, tmp_path / "run", progress=False, resume=True)
    assert [r.stage for r in result.history] == [1, 2, 3] and result.epochs_done == 3
    after = [*net.new_parameters(1), *net.norms[0].buffers()]
    assert all(torch.equal(a, b) for a, b in zip(stage1, after, strict=True))  # BN stats too
    with torch.no_grad():
        assert torch.equal(before, net.eval()(probe)[0])  # stage 1 answers exactly as before
    assert not all(torch.equal(a, b) for a, b in zip(stage2, net.new_parameters(2), strict=True))
    assert result.history[0].train_loss[1:] == [None, None]


def test_standalone_trains_one_subnetwork(tmp_path) -> None:
    result = train(make_toy(), config(standalone=2), tmp_path / "run", progress=False)
    (stage,) = result.stages
    assert (stage.stage, stage.label) == (2, "w2")
    assert result.params == [660]
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    assert "net.stripes.1.weight" in final and "net.stripes.2.weight" not in final


def test_learning_rate_schedules() -> None:
    paper = make_config(lr=0.1, epochs=200, schedule="exp")
    assert learning_rate(paper, 0, 200) == pytest.approx(0.1)
    assert learning_rate(paper, 199, 200) == pytest.approx(0.0008)
    assert learning_rate(paper, 100, 200) < learning_rate(paper, 99, 200)
    cosine = make_config(lr=0.1, schedule="cosine", lr_final=0.0)
    assert learning_rate(cosine, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cosine, 5, 10) == pytest.approx(0.05)
    step = make_config(lr=1.0, schedule="step", milestones=[2, 4], gamma=0.5)
    assert [learning_rate(step, e, 6) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert learning_rate(make_config(schedule="constant", lr=0.3), 7, 10) == 0.3


def test_optimizers_from_config() -> None:
    params = list(torch.nn.Linear(2, 2).parameters())
    sgd = build_optimizer(make_config(nesterov=True), params)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["weight_decay"] == 5e-4
    adamw = build_optimizer(make_config(optimizer="adamw", lr=1e-3), params)
    assert isinstance(adamw, torch.optim.AdamW)
    assert set(OPTIMIZERS) == {"sgd", "adamw"}


def test_adamw_cosine_bf16_on_cpu_runs() -> None:
    result = train(
        make_toy(),
        config(optimizer="adamw", lr=1e-2, schedule="cosine", amp="bf16", device="cpu"),
        progress=False,
    )
    assert all(math.isfinite(m.loss) for m in result.stages)


@pytest.mark.parametrize("strategy", ["osgd-norm", "sgd-norm", "sgd", "greedy"])
def test_fp16_loss_scaling_gives_the_unscaled_direction(strategy: str) -> None:
    """Scaled losses + unscale-in-reduce + rescale + GradScaler.step == a plain step."""
    torch.manual_seed(3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    nets = [make_toy(), make_toy()]
    runtime = Runtime(device=torch.device("cpu"), amp_dtype=None, channels_last=False)
    mode = {"sgd": "joint", "greedy": "greedy"}.get(strategy, "anytime")
    for net, scaler in zip(
        nets, [None, torch.amp.GradScaler("cpu", init_scale=2.0**12)], strict=True
    ):
        stages = 2 if strategy == "greedy" else 3
        plan = StepPlan(
            mode,
            net,
            strategy,
            [net.stage_parameters(k) for k in range(1, stages + 1)],
            torch.optim.SGD(net.parameters(), lr=0.1),
            active_stage=2 if strategy == "greedy" else None,
            scaler=scaler,
        )
        train_step(plan, runtime, x, y)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_tiny_spec_end_to_end(tmp_path) -> None:
    spec = write_tiny_spec(tmp_path)
    run = tmp_path / "run"
    result = train(spec, config(strategy="osgd"), run, progress=False)
    assert [m.label for m in result.stages] == ["w1", "w2", "w4"]
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "spec.nest",
        "metrics.jsonl",
        "checkpoint.pt",
        "final.pt",
        "results.json",
    }
    assert (run / "spec.nest").read_text() == (tmp_path / "tiny.nest").read_text()


@pytest.mark.parametrize(
    ("overrides", "code", "text"),
    [
        ({"strategy": "osdg"}, "T002", "did you mean `osgd`?"),
        ({"strategy": "sgd-sun"}, "T002", "did you mean `sgd-sum`?"),
        ({"priority": [1, 1, 2]}, "T003", "not a permutation"),
        ({"importances": [1, 2]}, "T004", "3 non-negative"),
        ({"standalone": 4}, "T005", "only 3 stages"),
        ({"device": "cuda:7"}, "T006", "cuda:7"),
        ({"device": "tpu"}, "T001", "unknown device"),
        ({"amp": "fp16", "device": "cpu"}, "T007", "CUDA"),
        ({"oracle": 1}, "T017", "ready-made module"),
        ({"data": "imagenette"}, "D001", "unknown data source"),
        ({"data": "synthetic:64:7"}, "T011", "7 classes"),
    ],
)
def test_user_errors_are_nest_errors(overrides: dict, code: str, text: str) -> None:
    with pytest.raises(NestError) as caught:
        train(make_toy(), config(**overrides), progress=False)
    rendered = caught.value.render()
    assert f"[{code}]" in rendered and text in rendered


def test_invalid_option_values_become_nest_errors() -> None:
    with pytest.raises(NestError, match="T001"):
        make_config(schedule="linear")
    with pytest.raises(NestError, match="T001"):
        make_config(unknown_key=1)


def test_tensorboard_scalars_are_written(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    train(make_toy(), config(log="tensorboard", epochs=1), tmp_path / "r", progress=False)
    events = list((tmp_path / "r" / "tensorboard").iterdir())
    assert events and all(e.stat().st_size > 0 for e in events)


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch) -> None:
    from nestdsl.train import scalars

    monkeypatch.setattr(scalars, "tensorboard_available", lambda: False)
    with pytest.raises(NestError, match="T012"):
        train(make_toy(), config(log="tensorboard"), tmp_path / "r", progress=False)


def test_toy_contract() -> None:
    net = ToyNested()
    x = torch.randn(4, 1, 8, 8)
    joint = net(x)
    assert len(joint) == 3
    assert torch.allclose(net.subnetwork(2)(x), joint[1])
    assert net.stage_parameters(2)[: len(net.stage_parameters(1))] == net.stage_parameters(1)


def test_a_module_without_the_contract_is_refused() -> None:
    with pytest.raises(NestError) as caught:
        train(torch.nn.Linear(64, 10), config(), progress=False)
    assert "[T011]" in caught.value.render() and "contract" in caught.value.render()


def test_compiled_and_toy_networks_satisfy_the_protocol(tmp_path) -> None:
    from nestdsl.compiler import compile as compile_spec
    from nestdsl.contracts import AnytimeNetwork
    from nestdsl.load import load

    assert isinstance(compile_spec(load(write_tiny_spec(tmp_path))), AnytimeNetwork)
    assert isinstance(make_toy(), AnytimeNetwork)
    assert not isinstance(torch.nn.Linear(2, 2), AnytimeNetwork)


def test_oracle_and_standalone_exclude_each_other(tmp_path) -> None:
    with pytest.raises(NestError) as caught:
        train(write_tiny_spec(tmp_path), config(oracle=2, standalone=2), progress=False)
    assert "[T017]" in caught.value.render()


def test_greedy_freezes_batchnorm_of_finished_stages_in_a_compiled_net(tmp_path) -> None:
    spec, run = write_tiny_spec(tmp_path), tmp_path / "run"
    cfg = config(strategy="greedy", epochs=1)
    first = train(spec, cfg, run, progress=False, until_epoch=1)
    net = first.net
    probe = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        stage_1 = net.eval()(probe)[0]
    buffers = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    result = train(spec, cfg, run, progress=False, resume=True)
    after = result.net.state_dict()
    with torch.no_grad():
        assert torch.equal(stage_1, result.net.eval()(probe)[0])
    stem = result.net.op("stem")
    rows = stem.layer.stripes[0]  # the stage-1 stripe's statistics are untouched ...
    key = next(k for k in buffers if k.startswith("ops.stem") and k.endswith("running_mean"))
    assert torch.equal(buffers[key][:rows], after[key][:rows])
    assert not torch.equal(buffers[key][rows:], after[key][rows:])  # ... later ones trained


def test_sgd_sum_is_sgd_on_the_summed_losses() -> None:
    """Without weight decay, Eq. 1 on the sum at LR a equals Eq. 1 on the mean at LR n·a."""
    summed, averaged = make_toy(), make_toy()
    common = {"weight_decay": 0.0, "epochs": 1, "schedule": "constant"}
    train(summed, config(strategy="sgd-sum", lr=0.01, **common), progress=False)
    train(averaged, config(strategy="sgd", lr=0.03, **common), progress=False)
    for a, b in zip(summed.parameters(), averaged.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    unchanged = make_toy()
    train(unchanged, config(strategy="sgd", lr=0.01, **common), progress=False)
    assert not states_equal(unchanged.state_dict(), summed.state_dict())
