"""Per-stage evaluation of an anytime network: top-1/top-5 accuracy, mean loss, count.

One joint forward pass per batch gives every stage's logits (the contract's ``net(x)``), so
evaluating all n stages costs one pass of D_n, not n passes. A plain module that returns one
tensor (a standalone ``net.subnetwork(k)``) is treated as a one-stage network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nestdsl.contracts import StageLabelled

TOP_K = 5


@dataclass(frozen=True)
class StageMetrics:
    """Validation results of one stage (accuracies are fractions in [0, 1])."""

    stage: int
    label: str
    top1: float
    top5: float
    loss: float
    count: int

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record including the errors (what the paper's tables report)."""
        return {**asdict(self), "top1_error": self.top1_error, "top5_error": self.top5_error}


def stage_outputs(outputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """A nested net returns a list of logits; a plain classifier a single tensor."""
    return [outputs] if isinstance(outputs, Tensor) else list(outputs)


def stage_labels(net: nn.Module, n: int) -> list[str]:
    """The network's stage labels when it has them (one per output), else ``stage1`` …"""
    if isinstance(net, StageLabelled) and len(net.stage_labels) == n:
        return [str(label) for label in net.stage_labels]
    return [f"stage{k}" for k in range(1, n + 1)]


def autocast(
    device: torch.device, dtype: torch.dtype | None, *, cache: bool = True
) -> contextlib.AbstractContextManager[object]:
    """Mixed-precision region on `device` (a no-op when `dtype` is None): training and
    evaluation use this one helper so that they run the same precision. ``cache=False``:
    no cast kept across uses of a weight (CUDA graph captures need that)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def _zero(device: torch.device) -> Tensor:
    return torch.zeros((), dtype=torch.float64, device=device)


@torch.no_grad()
def evaluate(
    net: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> list[StageMetrics]:
    """Evaluate every stage of ``net`` on ``loader`` in eval mode (restoring the mode after).

    ``amp_dtype`` (bf16/fp16) evaluates under the autocast a trainer trains with; logits are
    scored in float32, counts are exact and the loss is the mean cross-entropy per sample.
    """
    device = torch.device(device)
    was_training = net.training
    net.eval()
    loss_sum: list[Tensor] = []
    top1: list[Tensor] = []
    top5: list[Tensor] = []
    count = 0
    try:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            if channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                outputs = stage_outputs(net(images))
            if not loss_sum:
                loss_sum, top1, top5 = ([_zero(device) for _ in outputs] for _ in range(3))
            for i, logits in enumerate(outputs):
                logits = logits.float()
                loss_sum[i] += F.cross_entropy(logits, labels, reduction="sum").double()
                k = min(TOP_K, logits.shape[1])
                best = logits.topk(k, dim=1).indices
                hits = best.eq(labels.unsqueeze(1))
                top1[i] += hits[:, 0].sum()
                top5[i] += hits.any(dim=1).sum()
            count += int(labels.shape[0])
    finally:
        net.train(was_training)
    labels_text = stage_labels(net, len(loss_sum))
    total = max(count, 1)
    return [
        StageMetrics(
            stage=i + 1,
            label=labels_text[i],
            top1=float(top1[i]) / total,
            top5=float(top5[i]) / total,
            loss=float(loss_sum[i]) / total,
            count=count,
        )
        for i in range(len(loss_sum))
    ]
