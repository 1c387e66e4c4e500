"""The training loop: phases, epochs, evaluation, checkpoints and exact resumption.

A run is a list of *phases*. Every strategy but ``greedy`` has one phase covering all epochs.
``greedy`` (Algorithm 1) has one phase per stage, each the full ``epochs`` budget (the paper
trains every stage for ``max_train_steps``), so a greedy run has n × epochs epochs; each phase
trains w_k \\ w_(k-1) on L_k with a fresh optimizer over those parameters only and its own
full LR schedule, leaving earlier stages frozen: their weights get no update and their
BatchNorm layers run in eval mode, so their running statistics stay as their phase left them.

Splits: every epoch is validated on the source's validation split (what selection may look
at); a finished run is evaluated once on the test split, which nothing else reads. The sizes
and the rule of the split are recorded in ``config.json``.

Exactness of ``resume``: each epoch starts by reseeding every RNG from (seed, epoch, rank) and
the sampler order is a function of (seed, epoch); a checkpoint is written at epoch ends only
and holds the model, optimizer, scaler and RNG states. A run killed mid-epoch therefore
restarts that epoch from its beginning in exactly the state the uninterrupted run had, and
on CPU its final weights are bit-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import nestdsl
from nestdsl.ast import Spec
from nestdsl.compiler import NestedNet
from nestdsl.contracts import AnytimeNetwork
from nestdsl.data import DataSplit, build_datasets
from nestdsl.data.base import SplitRecord
from nestdsl.diagnostics import fail
from nestdsl.evaluate import StageMetrics, evaluate
from nestdsl.oracle import OracleCost, oracle_cost
from nestdsl.oracle import oracle as oracle_of
from nestdsl.train import distributed
from nestdsl.train.batch_step import LossWatch, StepPlan, distinct, mode_of
from nestdsl.train.compiled import check_available, compiled, compiled_text, compiling
from nestdsl.train.config import TrainConfig, greedy_phases
from nestdsl.train.config_checks import SUM_OF_LOSSES, check_classes, check_config
from nestdsl.train.devices import Runtime, deterministic, limited_threads, resolve_runtime
from nestdsl.train.distributed import DistContext
from nestdsl.train.graphed import Step, check_graphable, graphs_text, stepper
from nestdsl.train.loaders import EpochLoaders, seed_epoch
from nestdsl.train.lr_schedules import build_optimizer, learning_rate, set_learning_rate
from nestdsl.train.progress import RunPlan, TrainProgress, epoch_line, strategy_text
from nestdsl.train.records import EpochRecord
from nestdsl.train.runs import (
    RunDir,
    capture_rng,
    check_resumable,
    params_key,
    restore_training,
)
from nestdsl.train.scalars import ScalarLog, check_log, open_scalars

SpecOrNet = Spec | str | Path | nn.Module


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one optimizer: all of them, or one greedy stage."""

    index: int
    stage: int | None
    first_epoch: int
    epochs: int

    def contains(self, epoch: int) -> bool:
        return self.first_epoch <= epoch < self.first_epoch + self.epochs


def plan_phases(config: TrainConfig, num_stages: int) -> list[Phase]:
    """One phase, or for greedy one per stage of ``config.epochs`` each (see module doc)."""
    if not greedy_phases(config):
        return [Phase(0, None, 0, config.epochs)]
    return [Phase(i, i + 1, i * config.epochs, config.epochs) for i in range(num_stages)]


def total_epochs(config: TrainConfig, num_stages: int) -> int:
    """Epochs of the whole run: n × epochs for greedy, epochs otherwise."""
    last = plan_phases(config, num_stages)[-1]
    return last.first_epoch + last.epochs


@dataclass
class TrainResult:
    """What a run produced.

    ``net`` is the trained module (the standalone D_K with ``standalone=K``, the Oracle
    network with ``oracle=K``), ``stages`` the last validation per stage, ``test`` the test
    split's results of a finished run (empty otherwise), ``params`` the parameter count per
    stage, ``history`` the epoch records; ``finished`` is False when stopped early by
    ``until_epoch``. ``split`` says how the data was divided; ``oracle`` compares the Oracle
    with D_K when one was trained.
    """

    net: nn.Module
    stages: list[StageMetrics]
    params: list[int]
    history: list[EpochRecord] = field(default_factory=list)
    run_dir: Path | None = None
    epochs_done: int = 0
    finished: bool = True
    test: list[StageMetrics] = field(default_factory=list)
    split: SplitRecord | None = None
    oracle: OracleCost | None = None


@dataclass(frozen=True)
class Target:
    """The network to train and, when it came from a spec, where and what that spec is."""

    net: nn.Module
    spec_path: str | None = None
    spec_text: str | None = None
    oracle: OracleCost | None = None


def materialize(spec_or_net: SpecOrNet, seed: int, oracle: int | None = None) -> Target:
    """Compile a spec (path or loaded) with the run's seed, or take a ready module as is.

    With ``oracle=k`` the network compiled is the Oracle of stage k (:mod:`nestdsl.oracle`),
    which only a spec can give; the spec recorded is still the nested one it came from.
    """
    from nestdsl.compiler import compile as compile_spec
    from nestdsl.load import load

    if isinstance(spec_or_net, nn.Module):
        if oracle is not None:
            fail(
                "T017",
                "--oracle builds a new network from a spec; it cannot be used with a "
                "ready-made module",
                help="pass the spec (a path or a loaded Spec) instead",
            )
        return Target(spec_or_net)
    spec = spec_or_net if isinstance(spec_or_net, Spec) else load(spec_or_net)
    if oracle is None:
        torch.manual_seed(seed)
        return Target(compile_spec(spec), spec.path, spec.source)
    cost = oracle_cost(spec, oracle)
    torch.manual_seed(seed)
    # The run keeps the nested spec (so --resume derives the same Oracle again).
    return Target(compile_spec(oracle_of(spec, oracle)), spec.path, spec.source, cost)


def fingerprint(module: nn.Module) -> str:
    """Names and shapes of the state: what a checkpoint must match to be loadable."""
    lines = [f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def loss_memberships(net: AnytimeNetwork) -> list[list[nn.Parameter]]:
    """Per loss, the parameters it reaches (``loss_parameters``): a parameter's subnetworks
    are the losses that reach it, the paper's "subnetworks in which they participate". With
    ``stage_parameters`` head 1 would count as a member of all n subnetworks and NormSGD
    would divide its update by n, though only L_1 reaches it."""
    return [net.loss_parameters(k) for k in range(1, net.num_stages + 1)]


def count_params(params: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in distinct(params))


def train(
    spec_or_net: SpecOrNet,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    *,
    resume: bool = False,
    until_epoch: int | None = None,
) -> TrainResult:
    """Train an anytime network and return it with its per-stage validation results.

    ``spec_or_net`` is a ``.nest`` path, a loaded Spec (compiled with ``config.seed``) or a
    module implementing the NestedNet contract (seed its construction yourself). With
    ``run_dir`` the run writes config, metrics, checkpoints and results there; ``resume=True``
    continues the run in ``run_dir`` from its last checkpoint. ``until_epoch`` stops after that
    many epochs as if the process had been killed (for tests and time-sliced jobs).
    Under torchrun (WORLD_SIZE > 1 in the environment) this joins the process group. On a
    CPU the intra-op threads are lowered to this process's share of the machine
    (:func:`nestdsl.train.devices.thread_budget`: local processes, loader workers,
    ``NESTDSL_PARALLEL_RUNS``).
    """
    config = config or TrainConfig()
    target = materialize(spec_or_net, config.seed, config.oracle)
    check_config(config, contract(target.net).num_stages)
    check_log(config.log)
    context = distributed.from_env()
    runtime = resolve_runtime(config, context.local_rank, context.local_world_size)
    check_available(config, runtime.device)
    check_graphable(config, runtime.device, context.world_size)
    created = distributed.init(context, runtime.device)
    try:
        with (
            deterministic(runtime.device),
            _cpu_share(runtime, context, config),
            compiling(config.torch_compile),
        ):
            session = _Session(target, config, runtime, context, run_dir, progress)
            return session.run(resume=resume, until_epoch=until_epoch)
    finally:
        distributed.shutdown(created)


def _cpu_share(
    runtime: Runtime, context: DistContext, config: TrainConfig
) -> contextlib.AbstractContextManager[object]:
    """On a CPU, this process's share of the cores (a GPU run leaves torch's threads alone)."""
    if runtime.device.type != "cpu":
        return contextlib.nullcontext()
    return limited_threads(context.local_world_size, config.workers)


def contract(net: nn.Module) -> AnytimeNetwork:
    """``net`` as the nested-network contract (docs/contracts.md), or a T011 error."""
    if not isinstance(net, AnytimeNetwork):
        fail("T011", "the network does not implement the NestedNet contract (docs/contracts.md)")
    stages = net.num_stages
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        fail("T011", "the network's num_stages is not a positive integer (NestedNet contract)")
    return net


class _Session:
    """The state of one training process for one run."""

    def __init__(
        self,
        target: Target,
        config: TrainConfig,
        runtime: Runtime,
        context: DistContext,
        run_dir: str | Path | None,
        progress: bool,
    ) -> None:
        self.target = target
        self.net = contract(target.net)
        self.config = config
        self.runtime = runtime
        self.context = context
        self.rundir = RunDir(run_dir, writer=context.is_main) if run_dir is not None else None
        self.progress = progress and context.is_main
        self.n = self.net.num_stages
        self.mode = mode_of(config, runtime.device.type)
        self.phases = plan_phases(config, self.n)
        self.total = total_epochs(config, self.n)
        self.model: nn.Module = (
            self.net.subnetwork(config.standalone) if config.standalone else target.net
        )
        self.runner = compiled(self.model, config.torch_compile)
        """What steps and evaluation call: ``model`` or its compiled wrapper (same state)."""
        self.history: list[EpochRecord] = []
        self.step = 0
        self.split: SplitRecord | None = None

    # --- setup -------------------------------------------------------------------------------

    def _labels(self) -> list[str]:
        labels = [str(x) for x in self.net.stage_labels]
        if self.target.oracle is not None:  # the plain network's own label would be `w1`
            return [self.target.oracle.label]
        return [labels[self.config.standalone - 1]] if self.config.standalone else labels

    def _params(self) -> list[int]:
        if self.config.standalone:
            return [count_params(list(self.model.parameters()))]
        return [count_params(self.net.stage_parameters(k)) for k in range(1, self.n + 1)]

    def _describe(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "data_split": self.split.as_dict() if self.split is not None else None,
            "spec": {"path": self.target.spec_path, "text": self.target.spec_text},
            "network": {
                "stages": self.n,
                "labels": self._labels(),
                "params": self._params(),
                "fingerprint": fingerprint(self.model),
            },
            "world_size": self.context.world_size,
            "nestdsl_version": nestdsl.__version__,
        }

    @property
    def run_path(self) -> Path | None:
        return self.rundir.path if self.rundir is not None else None

    def _start(self, resume: bool) -> dict[str, Any] | None:
        """Create or reopen the run directory; return the checkpoint to resume from."""
        if self.rundir is None:
            if resume:
                fail("T008", "resuming needs the run directory of the run to continue")
            return None
        if resume:
            check_resumable(
                self.rundir.read_config(),
                self.run_path,
                self.target.spec_text,
                fingerprint(self.model),
                self.config,
            )
            state = self.rundir.load_checkpoint()
            self.rundir.truncate_metrics(int(state["epochs_done"]))
            self.history = [EpochRecord.from_dict(r) for r in self.rundir.read_metrics()]
            return state
        self.rundir.create()
        self.rundir.write_config(self._describe(), self.target.spec_text)
        return None

    def _plan(self, phase: Phase) -> StepPlan:
        """Optimizer and fill_grad arguments of one phase."""
        config, net = self.config, self.net
        reduce = distributed.AsyncMean() if self.context.enabled else None
        scaler = (
            torch.amp.GradScaler(self.runtime.device.type) if self.runtime.uses_scaler else None
        )
        if self.mode == "standalone":
            params = distinct(list(self.model.parameters()))
            return StepPlan(
                "standalone",
                self.runner,
                "sgd",
                [params],
                build_optimizer(config, params),
                reduce=reduce,
                scaler=scaler,
            )
        if self.mode == "greedy":
            assert phase.stage is not None
            k = phase.stage
            return StepPlan(
                "greedy",
                self.model,
                "greedy",
                [net.stage_parameters(j) for j in range(1, k + 1)],
                build_optimizer(config, distinct(net.new_parameters(k))),
                active_stage=k,
                reduce=reduce,
                scaler=scaler,
            )
        sums = config.strategy == SUM_OF_LOSSES  # Eq. 1 with every loss multiplied by n
        return StepPlan(
            self.mode,
            self.runner,
            "sgd" if sums else config.strategy,
            loss_memberships(net),
            build_optimizer(config, distinct(list(self.model.parameters()))),
            priority=config.priority,
            importances=config.importances,
            norm_constant=config.norm_constant,
            reduce=reduce,
            scaler=scaler,
            loss_scale=float(self.n) if sums else 1.0,
            capture=net.bank if isinstance(net, NestedNet) else None,
        )

    def _load_data(self) -> tuple[EpochLoaders, DataSplit]:
        data = build_datasets(
            self.config.data,
            self.net.input_shape,
            augment=self.config.augment,
            seed=self.config.seed,
        )
        check_classes(data, self.net.num_classes)
        loaders = EpochLoaders(
            data.train,
            data.val,
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            workers=self.config.workers,
            pin_memory=self.runtime.pin_memory,
            context=self.context,
        )
        return loaders, data

    # --- the loop ------------------------------------------------------------------------------

    def run(self, *, resume: bool, until_epoch: int | None) -> TrainResult:
        loaders, data = self._load_data()
        self.split = data.record
        state = self._start(resume)
        self.model.to(self.runtime.device)
        if self.runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.context.enabled:
            distributed.broadcast_module(self.model)
        done = 0
        plan: StepPlan | None = None
        if state is not None:
            done, self.step = int(state["epochs_done"]), int(state["step"])
            plan = self._plan(self._phase_at(done)) if done < self.total else None
            same_phase = plan is not None and int(state["phase"]) == self._phase_at(done).index
            restore_training(
                state,
                self.model,
                plan.optimizer if plan is not None and same_phase else None,
                plan.scaler if plan is not None and same_phase else None,
            )
        last: list[StageMetrics] | None = None
        scalars = open_scalars(
            self.config.log if self.context.is_main else "jsonl", self.run_path, self._labels()
        )
        stop = self.total if until_epoch is None else min(until_epoch, self.total)
        try:
            with (
                distributed.synced_batchnorm(self.config.sync_bn),
                TrainProgress(self.progress) as bars,
            ):
                bars.banner(self._plan_of_run(loaders, done))
                bars.start_run(self.total, done)
                steps: Step | None = None
                for epoch in range(done, stop):
                    phase = self._phase_at(epoch)
                    if plan is None or epoch == phase.first_epoch:
                        plan = self._plan(phase)
                        steps = None
                    if steps is None:
                        steps = stepper(plan, self.runtime, self.config.cuda_graphs)
                    last = self._epoch(epoch, phase, plan, steps, loaders, bars, scalars)
        finally:
            scalars.close()
        finished = stop == self.total
        if last is None:
            last = self._evaluate(loaders.val)
        stages = last or []
        test: list[StageMetrics] = []
        if finished:
            test = self._evaluate(loaders.held_out(data.test))
        if finished and self.context.is_main:
            self._finish(stages, test)
        distributed.barrier(self.context)
        return TrainResult(
            net=self.model,
            stages=stages,
            params=self._params(),
            history=list(self.history),
            run_dir=self.run_path,
            epochs_done=max(stop, done),
            finished=finished,
            test=test,
            split=self.split,
            oracle=self.target.oracle,
        )

    def _plan_of_run(self, loaders: EpochLoaders, done: int) -> RunPlan:
        return RunPlan(
            spec=self.target.spec_path,
            labels=self._labels(),
            strategy=strategy_text(self.config, self.runtime.device.type),
            compiled=compiled_text(self.config, self.mode),
            graphs=graphs_text(self.config),
            device=str(self.runtime.device),
            data=self.config.data,
            train_size=len(loaders.sampler.dataset),  # type: ignore[arg-type]
            val_size=len(loaders.val.dataset),  # type: ignore[arg-type]
            epochs=self.total,
            epochs_done=done,
            run_dir=self.run_path,
        )

    def _phase_at(self, epoch: int) -> Phase:
        return next(p for p in self.phases if p.contains(epoch))

    def _epoch(
        self,
        epoch: int,
        phase: Phase,
        plan: StepPlan,
        steps: Step,
        loaders: EpochLoaders,
        bars: TrainProgress,
        scalars: ScalarLog,
    ) -> list[StageMetrics] | None:
        started = time.perf_counter()
        lr = learning_rate(self.config, epoch - phase.first_epoch, phase.epochs)
        set_learning_rate(plan.optimizer, lr)
        seed_epoch(self.config.seed, epoch, self.context.rank)
        loaders.start_epoch(epoch)
        bars.start_epoch(self._title(epoch, phase), len(loaders.train))
        self.model.train()
        sums: Tensor | None = None  # (stages,) float64: Σ loss × batch size
        seen = 0
        watch = LossWatch(first_stage=self.config.standalone or self.config.oracle or 1)
        for images, labels in loaders.train:
            images = self.runtime.to_device(images)
            labels = labels.to(self.runtime.device, non_blocking=self.runtime.pin_memory)
            # (stages,); with the watch and the sum, four ops of bookkeeping whatever the stages
            losses = torch.stack(steps(images, labels))
            watch.observe(losses, self.step)
            if sums is None:
                sums = torch.zeros(losses.shape, dtype=torch.float64, device=losses.device)
            sums.add_(losses, alpha=labels.shape[0])
            seen += int(labels.shape[0])
            self.step += 1
            show = bars.active and self.step % 10 == 0  # .item() syncs a GPU: not every step
            bars.step(f"loss {float(losses[-1]):.3f}" if show else None)
        watch.check()
        train_loss = self._mean_losses(sums, seen, plan)
        metrics = self._evaluate(loaders.val)
        record = self._record(epoch, phase, lr, train_loss, metrics, time.perf_counter() - started)
        self.history.append(record)
        if self.rundir is not None:
            self.rundir.append_metrics(record.as_dict())
            if self._checkpoint_due(epoch, phase):
                self._checkpoint(epoch + 1, phase, plan)
        scalars.add(record)
        bars.end_epoch(epoch_line(record, self._labels(), self.total))
        return metrics

    def _title(self, epoch: int, phase: Phase) -> str:
        where = f"epoch {epoch + 1}/{self.total}"
        if phase.stage is not None:
            label = self._labels()[phase.stage - 1]
            within = f"epoch {epoch - phase.first_epoch + 1}/{phase.epochs}"
            return f"stage {phase.stage}/{self.n} ({label}) {within}, {where} in all"
        if self.config.standalone:
            return f"standalone {self._labels()[0]} {where}"
        if self.config.oracle:
            return f"oracle {self._labels()[0]} {where}"
        return where

    def _mean_losses(self, sums: Tensor | None, seen: int, plan: StepPlan) -> list[float | None]:
        totals: list[float] = []
        if sums is not None and self.context.enabled:
            counted = torch.tensor([float(seen)], dtype=torch.float64, device=sums.device)
            reduced = torch.cat([sums, counted])
            torch.distributed.all_reduce(reduced)
            *totals, total_seen = reduced.tolist()
            seen = int(total_seen)
        elif sums is not None:
            totals = sums.tolist()
        means: list[float | None] = [s / max(seen, 1) for s in totals]
        width = 1 if self.config.standalone else self.n
        return means + [None] * (width - len(means))

    def _evaluate(self, loader: Iterable[tuple[Tensor, Tensor]]) -> list[StageMetrics]:
        metrics = evaluate(
            self.runner,
            loader,
            self.runtime.device,
            amp_dtype=self.runtime.amp_dtype,
            channels_last=self.runtime.channels_last,
        )
        labels = self._labels()
        first = self.config.standalone or self.config.oracle or 1
        if self.context.enabled:
            return distributed.combine_metrics(metrics, labels, first, self.runtime.device)
        return [replace(m, stage=first + i, label=labels[i]) for i, m in enumerate(metrics)]

    def _record(
        self,
        epoch: int,
        phase: Phase,
        lr: float,
        train_loss: list[float | None],
        metrics: list[StageMetrics] | None,
        seconds: float,
    ) -> EpochRecord:
        metrics = metrics or []
        return EpochRecord(
            epoch=epoch + 1,
            stage=phase.stage,
            lr=lr,
            train_loss=train_loss,
            val_loss=[m.loss for m in metrics],
            val_top1=[m.top1 for m in metrics],
            val_top5=[m.top5 for m in metrics],
            steps=self.step,
            time=round(seconds, 4),
        )

    def _checkpoint_due(self, epoch: int, phase: Phase) -> bool:
        done = epoch + 1
        return (
            done % self.config.checkpoint_every == 0
            or done == phase.first_epoch + phase.epochs
            or done == self.total
        )

    def _checkpoint(self, epochs_done: int, phase: Phase, plan: StepPlan) -> None:
        assert self.rundir is not None
        self.rundir.save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": plan.optimizer.state_dict(),
                "scaler": plan.scaler.state_dict() if plan.scaler is not None else {},
                "phase": phase.index,
                "epochs_done": epochs_done,
                "step": self.step,
                "schedule": {"name": self.config.schedule, "epoch": epochs_done},
                "rng": capture_rng(),
                "config": self.config.model_dump(mode="json"),
            }
        )

    def _finish(self, stages: list[StageMetrics], test: list[StageMetrics]) -> None:
        if self.rundir is None:
            return
        self.rundir.save_final(self.model.state_dict())
        params, key = self._params(), params_key(self.config)

        def rows(metrics: list[StageMetrics]) -> list[dict[str, Any]]:
            return [
                {**m.as_dict(), key: params[i] if i < len(params) else None}
                for i, m in enumerate(metrics)
            ]

        self.rundir.write_results(
            {
                "run_dir": str(self.rundir.path),
                "strategy": self.config.strategy,
                "standalone": self.config.standalone,
                "oracle": self.target.oracle.as_dict() if self.target.oracle else None,
                "epochs": self.total,
                "data": self.config.data,
                "data_split": self.split.as_dict() if self.split is not None else None,
                "stages": rows(stages),
                "test": rows(test),
            }
        )
