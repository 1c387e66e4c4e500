"""Experiments over many runs: grid files, the runner, results tables, plots, deadlines.

>>> from nestdsl.experiment import run_experiment
>>> run_experiment("experiments/digits.toml", "runs/digits", jobs=2)  # doctest: +SKIP
"""

from __future__ import annotations

from nestdsl.experiment.pipeline import run_experiment

__all__ = ["run_experiment"]
