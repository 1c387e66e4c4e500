"""`stratified_parts`: the fixed, stratified carving every three-way split is made with."""

from __future__ import annotations

import numpy as np

from nestdsl.data.base import stratified_parts


def test_parts_cover_every_index_once_per_class_share_and_do_not_move() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 1, 9])
    parts = stratified_parts(labels, (0.2, 0.1), seed=7)
    assert len(parts) == 3
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(labels)))
    assert all(np.array_equal(p, np.sort(p)) for p in parts)
    first = np.bincount(labels[parts[0]], minlength=4).tolist()
    second = np.bincount(labels[parts[1]], minlength=4).tolist()
    assert first == [2, 4, 0, 2] and second == [1, 2, 0, 1]  # a lone image stays in the rest
    again = stratified_parts(labels, (0.2, 0.1), seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = stratified_parts(labels, (0.2, 0.1), seed=8)
    assert not np.array_equal(parts[0], other[0])
