"""The thread budget: a training process's share of the CPUs it may actually use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nestdsl.diagnostics import NestError
from nestdsl.train import devices
from nestdsl.train.config import make_config


@pytest.fixture
def six_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Six CPUs in the affinity mask, no cgroup quota, no user thread settings."""
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    monkeypatch.setattr(devices, "CPU_MAX", quota)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(devices.PARALLEL_RUNS_ENV, raising=False)
    return quota


def test_threads_follow_the_cpus_this_process_may_use(six_cpus: Path) -> None:
    assert devices.available_cpus() == 6
    assert devices.thread_budget() == 6
    assert devices.thread_budget(processes=2) == 3
    assert devices.thread_budget(processes=2, workers=2) == 1
    assert devices.thread_budget(processes=8) == 1


@pytest.mark.parametrize(("line", "cpus"), [("200000 100000", 2), ("150000 100000", 2)])
def test_a_cgroup_quota_caps_the_affinity_mask(six_cpus: Path, line: str, cpus: int) -> None:
    six_cpus.write_text(line + "\n")
    assert devices.cgroup_cpus(six_cpus) == cpus
    assert devices.available_cpus() == cpus
    assert devices.thread_budget(processes=2) == 1


def test_a_missing_or_unreadable_quota_means_none(tmp_path: Path) -> None:
    assert devices.cgroup_cpus(tmp_path / "absent") is None
    (tmp_path / "bad").write_text("garbage\n")
    assert devices.cgroup_cpus(tmp_path / "bad") is None


def test_parallel_runs_share_the_machine(six_cpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(devices.PARALLEL_RUNS_ENV, "2")
    assert devices.thread_budget() == 3
    assert devices.thread_budget(processes=3) == 1
    monkeypatch.setenv(devices.PARALLEL_RUNS_ENV, "zero")
    assert devices.thread_budget() == 6


def test_the_users_omp_num_threads_wins(six_cpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv(devices.PARALLEL_RUNS_ENV, "3")
    assert devices.thread_budget(processes=2, workers=1) == 4


def test_limited_threads_lowers_and_restores_but_never_raises(
    six_cpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setenv(devices.PARALLEL_RUNS_ENV, "3")
        with devices.limited_threads() as threads:
            assert threads == torch.get_num_threads() == 2
        assert torch.get_num_threads() == 4
        torch.set_num_threads(1)
        with devices.limited_threads() as threads:
            assert threads == torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_each_local_process_takes_its_own_gpu(two_gpus: None) -> None:
    assert devices.resolve_device("cuda", 1, local_processes=2) == torch.device("cuda", 1)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(NestError, match=r"T014.*`cuda:0` names one GPU for all 2 processes"):
        devices.resolve_device("cuda:0", 1, local_processes=2)
    with pytest.raises(NestError, match=r"T014.*local rank 2 has no GPU of its own"):
        devices.resolve_device("cuda", 2, local_processes=3)


def test_a_gpu_run_lets_cudnn_benchmark(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(devices, "cuda_capability", lambda device: (8, 0))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    runtime = devices.resolve_runtime(make_config(device="cuda"), 1, 2)
    assert runtime.device == torch.device("cuda", 1) and runtime.amp_dtype == torch.bfloat16
    assert torch.backends.cudnn.benchmark
