"""The deadline simulation's schemes on hand-made networks (no training, no timing)."""

from __future__ import annotations

import numpy as np
import pytest

from nestdsl.experiment.deadline import (
    FACTORS,
    Network,
    anytime_correct,
    deadline_table,
    oracle_all,
    oracle_each,
    simulate,
)


def network(correct: list[list[bool]], val: list[float], finish: list[list[float]]) -> Network:
    return Network(np.array(correct), tuple(val), np.array(finish), classes=10)


# Two stages, three inputs; repeat 0 is fast (stage 1 at 1 ms, stage 2 at 3 ms), repeat 1 slow.
NESTED = network([[True, False, False], [True, True, False]], [50, 30], [[1, 3], [2, 6]])


def test_anytime_takes_the_last_finished_stage_or_guesses() -> None:
    draws = np.array([0, 0, 1])
    assert anytime_correct(NESTED, draws, 3.0).tolist() == [1.0, 1.0, 0.0]
    assert anytime_correct(NESTED, draws, 1.5).tolist() == [1.0, 0.0, 0.1]
    assert anytime_correct(NESTED, draws, 0.5).tolist() == [0.1, 0.1, 0.1]


SMALL = network([[True, False, False]], [40], [[1.0], [1.0]])
LARGE = network([[True, True, True]], [10], [[2.0], [5.0]])


def test_oracle_all_needs_every_input_in_time() -> None:
    draws = np.array([[0, 0, 0], [0, 0, 1]])  # the large net is slow for input 3
    assert oracle_all([SMALL, LARGE], draws, 2.0).tolist() == [1.0, 0.0, 0.0]
    assert oracle_all([SMALL, LARGE], draws, 5.0).tolist() == [1.0, 1.0, 1.0]
    assert oracle_all([SMALL, LARGE], draws, 0.5).tolist() == [0.1, 0.1, 0.1]


def test_oracle_each_chooses_per_input() -> None:
    draws = np.array([[0, 0, 0], [0, 0, 1]])
    assert oracle_each([SMALL, LARGE], draws, 2.0).tolist() == [1.0, 1.0, 0.0]


def test_simulation_deadlines_and_table() -> None:
    sim = simulate([(None, NESTED, [SMALL, LARGE]), (None, NESTED, [SMALL, LARGE])])
    assert sim.reference_ms == pytest.approx(3.5)  # the largest Oracle's mean latency
    assert sim.deadlines_ms[:-1] == pytest.approx([f * 3.5 for f in FACTORS])
    assert sim.deadlines_ms[-1] is None
    assert set(sim.errors) == {"Nested", "Oracle_All", "Oracle_Each"}
    no_deadline = {name: rows[-1][0] for name, rows in sim.errors.items()}
    assert no_deadline["Nested"] == pytest.approx(100 / 3)
    assert no_deadline["Oracle_All"] == pytest.approx(0.0)
    table = deadline_table(sim).splitlines()
    assert table[0] == "| deadline | Nested | Oracle_All | Oracle_Each |"
    assert table[2].startswith("| 0.50x (1.75 ms) |")
    assert table[-1].startswith("| none | 33.3 (0.0) |")
