"""Synthetic images: determinism, exact shapes, class counts, and learnability."""

from __future__ import annotations

import pytest
import torch

from nestdsl.data import build_datasets
from nestdsl.diagnostics import NestError


def _stack(ds, n=None):
    items = [ds[i] for i in range(len(ds) if n is None else n)]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def test_defaults_and_shapes():
    split = build_datasets("synthetic", (3, 7, 5))
    assert len(split.train) == 2048 and len(split.val) == len(split.test) == 512
    assert not torch.equal(split.val[0][0], split.test[0][0])  # independent draws
    assert split.num_classes == 10 and split.name == "synthetic"
    image, label = split.train[11]
    assert image.shape == (3, 7, 5) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label) == 1
    assert split.mean == (0.0,) * 3 and split.std == (1.0,) * 3


def test_sizes_and_classes_from_source():
    split = build_datasets("synthetic:100:3", (1, 4, 4))
    assert len(split.train) == 100 and len(split.val) == 25 and split.num_classes == 3
    _, labels = _stack(split.train)
    assert set(labels.tolist()) == {0, 1, 2}
    assert len(build_datasets("synthetic:2", (1, 4, 4)).val) == 1


def test_deterministic_across_calls_and_seed_changes_data():
    a = build_datasets("synthetic:64", (1, 8, 8))
    b = build_datasets("synthetic:64", (1, 8, 8))
    c = build_datasets("synthetic:64", (1, 8, 8), seed=1)
    xa, ya = _stack(a.train)
    xb, yb = _stack(b.train)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, _stack(c.train)[0])
    assert not torch.equal(xa[:16], _stack(a.val)[0])  # val items are distinct draws
    with pytest.raises(IndexError):
        a.train[64]


def test_a_linear_classifier_learns_it_above_chance():
    """Nearest class mean (a linear classifier fitted in closed form: no optimizer start-up)."""
    split = build_datasets("synthetic:512", (1, 8, 8))
    x, y = _stack(split.train)
    xv, yv = _stack(split.val)
    centroids = torch.stack([x[y == k].mean(0).flatten() for k in range(10)])
    predicted = torch.cdist(xv.flatten(1), centroids).argmin(1)
    accuracy = (predicted == yv).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1
    assert accuracy < 1.0 or len(yv) < 100  # learnable, not trivially separable everywhere


@pytest.mark.parametrize(
    "source", ["synthetic:abc", "synthetic:0", "synthetic:10:1", "synthetic:1:2:3"]
)
def test_malformed_arguments(source):
    with pytest.raises(NestError) as err:
        build_datasets(source, (1, 4, 4))
    assert err.value.diagnostics[0].code == "D002"


def test_large_splits_are_generated_lazily_and_deterministically(monkeypatch):
    from nestdsl.data import synthetic

    monkeypatch.setattr(synthetic, "PRECOMPUTE_LIMIT", 0)
    a = build_datasets("synthetic:40:4", (2, 6, 6))
    b = build_datasets("synthetic:40:4", (2, 6, 6))
    assert isinstance(a.train, synthetic.SyntheticDataset)
    assert len(a.train) == 40 and len(a.val) == 10
    xa, ya = _stack(a.train)
    assert xa.shape == (40, 2, 6, 6) and ya.tolist() == [i % 4 for i in range(40)]
    assert torch.equal(xa, _stack(b.train)[0])
    assert torch.equal(a.val[3][0], b.val[3][0])
    with pytest.raises(IndexError):
        a.train[40]
