"""Per-stage evaluation: accuracies, loss and count against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.evaluate import StageMetrics, evaluate


class FixedLogits(nn.Module):
    """Returns preset logits per sample index (the input holds the index), two stages."""

    def __init__(self, stage_logits: list[Tensor]) -> None:
        super().__init__()
        self.stage_logits = stage_logits
        self.stage_labels = ("a", "b")
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> list[Tensor]:
        index = x.long().view(-1)
        return [logits[index] + 0 * self.anchor for logits in self.stage_logits]


def batches(labels: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    index = torch.arange(labels.shape[0]).float().unsqueeze(1)
    return [(index[i : i + size], labels[i : i + size]) for i in range(0, len(labels), size)]


def test_top1_top5_loss_and_count_per_stage() -> None:
    torch.manual_seed(0)
    n, classes = 37, 8
    labels = torch.randint(0, classes, (n,))
    logits = [torch.randn(n, classes), torch.randn(n, classes)]
    logits[1][torch.arange(n), labels] += 10.0  # stage 2 always right
    net = FixedLogits(logits)
    net.train()
    metrics = evaluate(net, batches(labels, 10), "cpu")
    assert net.training, "the caller's mode is restored"
    assert [m.label for m in metrics] == ["a", "b"]
    assert [m.stage for m in metrics] == [1, 2]
    for m, out in zip(metrics, logits, strict=True):
        assert m.count == n
        assert m.top1 == pytest.approx((out.argmax(1) == labels).float().mean().item())
        top5 = out.topk(5, 1).indices.eq(labels[:, None]).any(1).float().mean().item()
        assert m.top5 == pytest.approx(top5)
        assert m.loss == pytest.approx(F.cross_entropy(out, labels).item(), rel=1e-6)
        assert m.top1_error == pytest.approx(1 - m.top1)
    assert metrics[1].top1 == 1.0 and metrics[1].top5 == 1.0


def test_single_output_module_and_fewer_than_five_classes() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    (m,) = evaluate(model, [(x, y)], torch.device("cpu"))
    assert isinstance(m, StageMetrics)
    assert m.top5 == 1.0  # top-k with k = number of classes covers every label
    assert m.label == "stage1"
    assert m.as_dict()["top5_error"] == 0.0


def test_empty_loader_gives_no_stages() -> None:
    assert evaluate(nn.Linear(2, 2), [], "cpu") == []
