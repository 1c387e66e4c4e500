"""Tables and statistics over seeds, from fake run records (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestdsl.diagnostics import NestError
from nestdsl.experiment.runner import Kind
from nestdsl.experiment.tables import (
    RunRecord,
    find_runs,
    results_markdown,
    spec_table,
    summarize,
)


def record(
    variant: str,
    seed: int,
    errors: tuple[float, ...],
    kind: Kind = "anytime",
    stage: int | None = None,
    spec: str = "net",
) -> RunRecord:
    labels = ("w1", "w2", "w4")[: len(errors)] if kind == "anytime" else (f"w{stage}",)
    return RunRecord(
        path=Path(spec, variant, f"seed{seed}"),
        spec=spec,
        variant=variant,
        kind=kind,
        seed=seed,
        stage=stage,
        labels=labels,
        errors=errors,
        val_errors=errors,
        flops=tuple(10 ** (k + 1) for k in range(len(errors))),
        baseline=False,
    )


FAKE = [
    record("sgd", 0, (30.0, 20.0, 10.0)),
    record("sgd", 1, (31.0, 21.0, 11.0)),
    record("sgd", 2, (32.0, 22.0, 12.0)),
    record("osgd", 0, (35.0, 15.0, 5.0)),
    record("osgd", 1, (35.0, 15.0, 5.0)),
    record("osgd", 2, (35.0, 15.0, 5.0)),
    record("osgd-p3-2-1", 0, (40.0, 16.0, 4.0)),
    *(
        record(f"oracle{k}", s, (20.0 - 5 * k + s,), "oracle", k)
        for k in (1, 2, 3)
        for s in (0, 1, 2)
    ),
]


def test_summary_mean_std_and_t_interval() -> None:
    stat = summarize([1.0, 2.0, 3.0])
    assert (stat.mean, stat.std, stat.count) == (2.0, 1.0, 3)
    assert stat.half_width == pytest.approx(4.302653 / 3**0.5, rel=1e-5)
    assert str(stat) == "2.0 (1.0) ±2.5"


def test_single_seed_has_no_spread() -> None:
    assert str(summarize([4.0])) == "4.0"


def test_spec_table_rows_columns_and_cells() -> None:
    assert spec_table(FAKE, "net").splitlines() == [
        "**net** (seeds 0, 1, 2)",
        "",
        "| stage | SGD | OSGD | OSGD 3,2,1 | Oracle |",
        "|---|---:|---:|---:|---:|",
        "| 1 w1 | 31.0 (1.0) ±2.5 | 35.0 (0.0) ±0.0 | 40.0 [n=1] | 16.0 (1.0) ±2.5 |",
        "| 2 w2 | 21.0 (1.0) ±2.5 | 15.0 (0.0) ±0.0 | 16.0 [n=1] | 11.0 (1.0) ±2.5 |",
        "| 3 w4 | 11.0 (1.0) ±2.5 | 5.0 (0.0) ±0.0 | 4.0 [n=1] | 6.0 (1.0) ±2.5 |",
    ]


def test_markdown_has_one_table_per_spec() -> None:
    other = [record("sgd", 0, (50.0, 40.0), spec="other")]
    text = results_markdown([*FAKE, *other])
    assert text.index("**net**") < text.index("**other**")
    assert "Student-t" in text


def test_find_runs_refuses_folders_without_runs(tmp_path: Path) -> None:
    with pytest.raises(NestError) as caught:
        find_runs([tmp_path])
    assert caught.value.diagnostics[0].code == "E935"
    with pytest.raises(NestError):
        find_runs([tmp_path / "absent"])
