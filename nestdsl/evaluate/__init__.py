"""Evaluating anytime networks: per-stage accuracy (``metrics``), measured latency
(``latency``), and anytime inference replayed from CUDA graphs (``graphs``).

The metrics are re-exported here so ``from nestdsl.evaluate import evaluate`` keeps working
for the trainer and for user code written against the single-module version.
"""

from nestdsl.evaluate.graphs import GraphedAnytime, GraphedCall
from nestdsl.evaluate.latency import Latency, cumulative, stage_latencies
from nestdsl.evaluate.metrics import (
    TOP_K,
    StageMetrics,
    autocast,
    evaluate,
    stage_labels,
    stage_outputs,
)

__all__ = [
    "TOP_K",
    "GraphedAnytime",
    "GraphedCall",
    "Latency",
    "StageMetrics",
    "autocast",
    "cumulative",
    "evaluate",
    "stage_labels",
    "stage_latencies",
    "stage_outputs",
]
