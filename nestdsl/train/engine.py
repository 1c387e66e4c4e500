"""The training loop: phases, epochs, evaluation, checkpoints and exact resumption.

A run is a list of *phases*. Every strategy but ``greedy`` has one phase covering all epochs.
``greedy`` (Algorithm 1) has one phase per stage: the ``epochs`` budget is split evenly over
the n stages (the remainder goes to the last stages, whose new parameters are the most
numerous); each phase trains w_k \\ w_(k-1) on L_k with a fresh optimizer over those
parameters only and its own full LR schedule, leaving earlier stages frozen.

Exactness of ``resume``: each epoch starts by reseeding every RNG from (seed, epoch, rank) and
the sampler order is a function of (seed, epoch); a checkpoint is written at epoch ends only
and holds the model, optimizer, scaler and RNG states. A run killed mid-epoch therefore
restarts that epoch from its beginning in exactly the state the uninterrupted run had, and
on CPU its final weights are bit-identical.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import nestdsl
from nestdsl.ast import Spec
from nestdsl.data import build_datasets
from nestdsl.evaluate import StageMetrics, evaluate
from nestdsl.train import distributed
from nestdsl.train.batch_step import LossWatch, StepPlan, distinct, mode_of, train_step
from nestdsl.train.checks import check_config, fail
from nestdsl.train.config import RUNTIME_FIELDS, TrainConfig
from nestdsl.train.devices import Runtime, deterministic, resolve_runtime
from nestdsl.train.distributed import DistContext
from nestdsl.train.loaders import EpochLoaders, seed_epoch
from nestdsl.train.progress import TrainProgress
from nestdsl.train.runs import RunDir, capture_rng, restore_rng
from nestdsl.train.scalars import check_log, open_scalars
from nestdsl.train.schedules import build_optimizer, learning_rate, set_learning_rate

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
    """One phase, or for greedy one per stage with the epochs split evenly (see module doc)."""
    if mode_of(config) != "greedy":
        return [Phase(0, None, 0, config.epochs)]
    base, extra = divmod(config.epochs, num_stages)
    phases, first = [], 0
    for i in range(num_stages):
        length = base + (1 if i >= num_stages - extra else 0)
        phases.append(Phase(i, i + 1, first, length))
        first += length
    return phases


@dataclass
class TrainResult:
    """What a run produced.

    ``net`` is the trained module (the standalone D_K with ``standalone=K``), ``stages`` the
    last validation per stage, ``params`` the parameter count per stage, ``history`` the
    metrics records; ``finished`` is False when stopped early by ``until_epoch``.
    """

    net: nn.Module
    stages: list[StageMetrics]
    params: list[int]
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    epochs_done: int = 0
    finished: bool = True


@dataclass(frozen=True)
class Target:
    """The network to train and, when it came from a spec, where and what that spec is."""

    net: nn.Module
    spec_path: str | None = None
    spec_text: str | None = None


def materialize(spec_or_net: SpecOrNet, seed: int) -> Target:
    """Compile a spec (path or loaded) with the run's seed, or take a ready module as is."""
    if isinstance(spec_or_net, nn.Module):
        return Target(spec_or_net)
    from nestdsl.compiler import compile as compile_spec
    from nestdsl.load import load

    spec = spec_or_net if isinstance(spec_or_net, Spec) else load(spec_or_net)
    torch.manual_seed(seed)
    return Target(compile_spec(spec), spec.path, spec.source)


def fingerprint(module: nn.Module) -> str:
    """Names and shapes of the state: what a checkpoint must match to be loadable."""
    lines = [f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


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
    Under torchrun (WORLD_SIZE > 1 in the environment) this joins the process group.
    """
    config = config or TrainConfig()
    target = materialize(spec_or_net, config.seed)
    check_config(config, _num_stages(target.net))
    check_log(config.log)
    context = distributed.from_env()
    runtime = resolve_runtime(config, context.local_rank)
    created = distributed.init(context, runtime.device)
    try:
        with deterministic(runtime.device):
            session = _Session(target, config, runtime, context, run_dir, progress)
            return session.run(resume=resume, until_epoch=until_epoch)
    finally:
        distributed.shutdown(created)


def _num_stages(net: nn.Module) -> int:
    stages = getattr(net, "num_stages", None)
    if not isinstance(stages, int) or stages < 1:
        fail("T011", "the network does not implement the NestedNet contract (num_stages)")
    return stages


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
        self.net: Any = target.net
        self.config = config
        self.runtime = runtime
        self.context = context
        self.rundir = RunDir(run_dir, writer=context.is_main) if run_dir is not None else None
        self.progress = progress and context.is_main
        self.n = _num_stages(self.net)
        self.mode = mode_of(config)
        self.phases = plan_phases(config, self.n)
        net: Any = target.net
        self.model: nn.Module = net.subnetwork(config.standalone) if config.standalone else net
        self.history: list[dict[str, Any]] = []
        self.step = 0

    # --- setup -------------------------------------------------------------------------------

    def _labels(self) -> list[str]:
        labels = [str(x) for x in getattr(self.net, "stage_labels", range(1, self.n + 1))]
        return [labels[self.config.standalone - 1]] if self.config.standalone else labels

    def _params(self) -> list[int]:
        if self.config.standalone:
            return [count_params(list(self.model.parameters()))]
        return [count_params(self.net.stage_parameters(k)) for k in range(1, self.n + 1)]

    def _describe(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
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

    def _check_resumable(self, stored: dict[str, Any]) -> None:
        """Refuse to continue a run with a different spec, network or learning setup (T009)."""
        spec = stored.get("spec") or {}
        text = spec.get("text")
        if text is not None and self.target.spec_text not in (None, text):
            fail(
                "T009",
                f"the run in {self.run_path} was trained from a different spec "
                f"({spec.get('path')})",
                help=f"resume with the run's own copy: --resume {self.run_path} without "
                "SPEC, or start a new run with --out",
            )
        network = stored.get("network") or {}
        if network.get("fingerprint") != fingerprint(self.model):
            fail("T009", f"the network differs from the one trained in {self.run_path}")
        before = stored.get("config") or {}
        now = self.config.model_dump(mode="json")
        changed = sorted(
            key
            for key in set(before) | set(now)
            if key not in RUNTIME_FIELDS and before.get(key) != now.get(key)
        )
        if changed:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            fail(
                "T009",
                f"cannot resume {self.run_path} with a different configuration ({detail})",
                help="only " + ", ".join(sorted(RUNTIME_FIELDS)) + " may change on resume",
            )

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
            self._check_resumable(self.rundir.read_config())
            state = self.rundir.load_checkpoint()
            self.rundir.truncate_metrics(int(state["epochs_done"]))
            self.history = self.rundir.read_metrics()
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
                self.model,
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
                net,
                "greedy",
                [net.stage_parameters(j) for j in range(1, k + 1)],
                build_optimizer(config, distinct(net.new_parameters(k))),
                active_stage=k,
                reduce=reduce,
                scaler=scaler,
            )
        return StepPlan(
            self.mode,
            net,
            config.strategy,
            [net.stage_parameters(k) for k in range(1, self.n + 1)],
            build_optimizer(config, distinct(list(net.parameters()))),
            priority=config.priority,
            importances=config.importances,
            norm_constant=config.norm_constant,
            reduce=reduce,
            scaler=scaler,
        )

    def _load_data(self) -> EpochLoaders:
        shape = tuple(getattr(self.net, "input_shape", ()))
        data = build_datasets(
            self.config.data, shape, augment=self.config.augment, seed=self.config.seed
        )
        classes = getattr(self.net, "num_classes", data.num_classes)
        if classes != data.num_classes:
            fail(
                "T011",
                f"data source `{data.name}` has {data.num_classes} classes but the network "
                f"predicts {classes}",
                help=f"set the spec's head to {data.num_classes} classes",
            )
        return EpochLoaders(
            data.train,
            data.val,
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            workers=self.config.workers,
            pin_memory=self.runtime.pin_memory,
            context=self.context,
        )

    # --- the loop ------------------------------------------------------------------------------

    def run(self, *, resume: bool, until_epoch: int | None) -> TrainResult:
        state = self._start(resume)
        loaders = self._load_data()
        self.model.to(self.runtime.device)
        if self.runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.context.enabled:
            distributed.broadcast_module(self.model)
        done = 0
        plan: StepPlan | None = None
        if state is not None:
            self.model.load_state_dict(state["model"])
            done, self.step = int(state["epochs_done"]), int(state["step"])
            if done < self.config.epochs:
                plan = self._plan(self._phase_at(done))
                if int(state["phase"]) == self._phase_at(done).index:
                    plan.optimizer.load_state_dict(state["optimizer"])
                    if plan.scaler is not None and state.get("scaler"):
                        plan.scaler.load_state_dict(state["scaler"])
            restore_rng(state["rng"])
        last: list[StageMetrics] | None = None
        scalars = open_scalars(
            self.config.log if self.context.is_main else "jsonl", self.run_path, self._labels()
        )
        stop = self.config.epochs if until_epoch is None else min(until_epoch, self.config.epochs)
        try:
            with TrainProgress(self.progress) as bars:
                bars.start_run(self.config.epochs, done)
                for epoch in range(done, stop):
                    phase = self._phase_at(epoch)
                    if plan is None or epoch == phase.first_epoch:
                        plan = self._plan(phase)
                    last = self._epoch(epoch, phase, plan, loaders, bars, scalars)
        finally:
            scalars.close()
        finished = stop == self.config.epochs
        if last is None and self.context.is_main:
            last = self._evaluate(loaders)
        stages = last or []
        if finished:
            self._finish(stages)
        distributed.barrier(self.context)
        return TrainResult(
            net=self.model,
            stages=stages,
            params=self._params(),
            history=list(self.history),
            run_dir=self.run_path,
            epochs_done=max(stop, done),
            finished=finished,
        )

    def _phase_at(self, epoch: int) -> Phase:
        return next(p for p in self.phases if p.contains(epoch))

    def _epoch(
        self,
        epoch: int,
        phase: Phase,
        plan: StepPlan,
        loaders: EpochLoaders,
        bars: TrainProgress,
        scalars: Any,
    ) -> list[StageMetrics] | None:
        started = time.perf_counter()
        lr = learning_rate(self.config, epoch - phase.first_epoch, phase.epochs)
        set_learning_rate(plan.optimizer, lr)
        seed_epoch(self.config.seed, epoch, self.context.rank)
        loaders.start_epoch(epoch)
        bars.start_epoch(self._title(epoch, phase), len(loaders.train))
        self.model.train()
        sums: list[Tensor] = []
        seen = 0
        watch = LossWatch(first_stage=self.config.standalone or 1)
        for images, labels in loaders.train:
            images = self.runtime.to_device(images)
            labels = labels.to(self.runtime.device, non_blocking=self.runtime.pin_memory)
            losses = train_step(plan, self.runtime, images, labels)
            watch.observe(losses, self.step)
            if not sums:
                sums = [torch.zeros((), dtype=torch.float64, device=images.device) for _ in losses]
            for i, loss in enumerate(losses):
                sums[i] += loss.double() * labels.shape[0]
            seen += int(labels.shape[0])
            self.step += 1
            show = bars.active and self.step % 10 == 0  # .item() syncs a GPU: not every step
            bars.step(f"loss {float(losses[-1]):.3f}" if show else None)
        watch.check()
        train_loss = self._mean_losses(sums, seen, plan)
        metrics = self._evaluate(loaders) if self.context.is_main else None
        record = self._record(epoch, phase, lr, train_loss, metrics, time.perf_counter() - started)
        self.history.append(record)
        if self.rundir is not None:
            self.rundir.append_metrics(record)
            if self._checkpoint_due(epoch, phase):
                self._checkpoint(epoch + 1, phase, plan)
        scalars.add(record)
        bars.end_epoch(self._summary(record))
        return metrics

    def _title(self, epoch: int, phase: Phase) -> str:
        where = f"epoch {epoch + 1}/{self.config.epochs}"
        if phase.stage is not None:
            label = self._labels()[phase.stage - 1]
            return f"stage {phase.stage}/{self.n} ({label}) {where}"
        if self.config.standalone:
            return f"standalone {self._labels()[0]} {where}"
        return where

    def _mean_losses(self, sums: list[Tensor], seen: int, plan: StepPlan) -> list[float | None]:
        if self.context.enabled and sums:
            stacked = torch.stack(sums)
            totals = torch.cat(
                [stacked, torch.tensor([float(seen)], dtype=torch.float64, device=stacked.device)]
            )
            torch.distributed.all_reduce(totals)
            sums, seen = list(totals[:-1]), int(totals[-1])
        means: list[float | None] = [float(s) / max(seen, 1) for s in sums]
        width = 1 if self.config.standalone else self.n
        return means + [None] * (width - len(means))

    def _evaluate(self, loaders: EpochLoaders) -> list[StageMetrics]:
        metrics = evaluate(
            self.model,
            loaders.val,
            self.runtime.device,
            amp_dtype=self.runtime.amp_dtype,
            channels_last=self.runtime.channels_last,
        )
        labels = self._labels()
        first = self.config.standalone or 1
        return [replace(m, stage=first + i, label=labels[i]) for i, m in enumerate(metrics)]

    def _record(
        self,
        epoch: int,
        phase: Phase,
        lr: float,
        train_loss: list[float | None],
        metrics: list[StageMetrics] | None,
        seconds: float,
    ) -> dict[str, Any]:
        metrics = metrics or []
        return {
            "epoch": epoch + 1,
            "stage": phase.stage,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": [m.loss for m in metrics],
            "val_top1": [m.top1 for m in metrics],
            "val_top5": [m.top5 for m in metrics],
            "steps": self.step,
            "time": round(seconds, 4),
        }

    @staticmethod
    def _summary(record: dict[str, Any]) -> str:
        def joined(values: list[float | None], percent: bool) -> str:
            shown = [
                "-" if v is None else (f"{100 * v:.1f}%" if percent else f"{v:.3f}") for v in values
            ]
            return "/".join(shown)

        return (
            f"epoch {record['epoch']}: lr {record['lr']:.4g}  "
            f"loss {joined(record['train_loss'], False)}  "
            f"val top-1 {joined(record['val_top1'], True)}  ({record['time']:.1f}s)"
        )

    def _checkpoint_due(self, epoch: int, phase: Phase) -> bool:
        done = epoch + 1
        return (
            done % self.config.checkpoint_every == 0
            or done == phase.first_epoch + phase.epochs
            or done == self.config.epochs
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

    def _finish(self, stages: list[StageMetrics]) -> None:
        if self.rundir is None:
            return
        self.rundir.save_final(self.model.state_dict())
        params = self._params()
        self.rundir.write_results(
            {
                "run_dir": str(self.rundir.path),
                "strategy": self.config.strategy,
                "standalone": self.config.standalone,
                "epochs": self.config.epochs,
                "data": self.config.data,
                "stages": [
                    {**m.as_dict(), "params": params[i] if i < len(params) else None}
                    for i, m in enumerate(stages)
                ],
            }
        )
