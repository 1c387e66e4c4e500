"""`EpochRecord`: the one shape of an epoch's report, stored as a line of metrics.jsonl."""

from __future__ import annotations

import json

import pytest

from nestdsl.train.records import PER_STAGE_SERIES, EpochRecord

RECORD = EpochRecord(
    epoch=4,
    stage=2,
    lr=0.05,
    train_loss=[None, 0.7, None],
    val_loss=[1.0, 0.8, 0.9],
    val_top1=[0.5, 0.6, 0.4],
    val_top5=[0.9, 0.95, 0.85],
    steps=40,
    time=1.25,
)


def test_round_trip_through_json_ignores_unknown_keys() -> None:
    stored = json.loads(json.dumps({**RECORD.as_dict(), "added_later": 1}))
    assert EpochRecord.from_dict(stored) == RECORD


def test_series_by_name() -> None:
    assert [RECORD.series(name)[1] for name in PER_STAGE_SERIES] == [0.7, 0.8, 0.6, 0.95]
    with pytest.raises(KeyError):
        RECORD.series("lr")
