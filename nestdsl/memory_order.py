"""A tensor's entries in the order they lie in memory, and back.

Both the weight bank (``compiler/assembly.py``), whose parameters are views of one flat
tensor, and ``fill_grad`` (``optim/stage_grads.py``), whose ``.grad`` tensors are views of one
flat direction, keep each tensor's entries in its memory order. A view can then carry the
tensor's own strides (channels-last included), which is what optimizers' fused and foreach
paths want, and flattening a tensor laid out that way copies nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor


def channels_last(tensor: Tensor) -> bool:
    """Whether a 4-d tensor is laid out channels-last (and not also plain contiguous)."""
    return (
        tensor.dim() == 4
        and not tensor.is_contiguous()
        and tensor.is_contiguous(memory_format=torch.channels_last)
    )


def flatten(tensor: Tensor, last: bool) -> Tensor:
    """``tensor``'s entries in the memory order of a ``last`` (channels-last) or contiguous
    tensor of its shape: a view when it is laid out that way, else a copy."""
    return (tensor.permute(0, 2, 3, 1) if last else tensor).reshape(-1)


def unflatten(chunk: Tensor, shape: torch.Size, last: bool) -> Tensor:
    """The inverse of ``flatten``: a view of ``chunk`` shaped ``shape`` in that layout."""
    if not last:
        return chunk if chunk.shape == shape else chunk.view(shape)
    out, channels, kh, kw = shape
    return chunk.view(out, kh, kw, channels).permute(0, 3, 1, 2)
