"""Optional multi-task comparators from torchjd (`pip install nestdsl[mtl]`).

torchjd's *weightings* map the n×n Gramian of the per-task gradients to n weights. That is the
same shape of computation as OSGD in coefficient space, so the comparators reuse the whole
Gram-matrix path of `combine`/`fill_grad`: no (n, d) Jacobian is ever needed.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import torch
from torch import Tensor

from nestdsl.optim.errors import OptionError

_WEIGHTINGS: dict[str, str] = {
    "mtl:upgrad": "UPGradWeighting",
    "mtl:mgda": "MGDAWeighting",
    "mtl:pcgrad": "PCGradWeighting",
    "mtl:dualproj": "DualProjWeighting",
    "mtl:imtlg": "IMTLGWeighting",
    "mtl:alignedmtl": "AlignedMTLWeighting",
    "mtl:mean": "MeanWeighting",
}

MTL_STRATEGIES: tuple[str, ...] = tuple(_WEIGHTINGS)
"""Comparator strategy names; usable only when torchjd is installed."""

INSTALL_HINT = "pip install nestdsl[mtl]"


def torchjd_available() -> bool:
    """Whether the optional torchjd dependency can be imported (checked without importing it)."""
    return importlib.util.find_spec("torchjd") is not None


def require_available(name: str) -> None:
    """An `mtl:*` strategy needs torchjd; say how to install it rather than fail later."""
    if name in _WEIGHTINGS and not torchjd_available():
        raise OptionError(
            "strategy",
            f"strategy `{name}` needs the optional dependency torchjd",
            f"install it: {INSTALL_HINT}",
        )


def _weighting(name: str) -> Any:
    """Instantiate torchjd's Gramian weighting for `name`, or explain how to get it."""
    require_available(name)
    aggregation = importlib.import_module("torchjd.aggregation")
    cls = getattr(aggregation, _WEIGHTINGS[name], None)
    if cls is None:
        raise OptionError(
            "strategy",
            f"strategy {name!r} needs torchjd's {_WEIGHTINGS[name]}, which the installed torchjd "
            f"does not provide; upgrade it: {INSTALL_HINT} (pip install -U torchjd)",
        )
    try:
        return cls()
    except ImportError as exc:  # e.g. UPGrad's default projector needs quadprog
        raise OptionError("strategy", f"strategy {name!r}: {exc}") from exc


def mtl_weights(name: str, gram: Tensor) -> Tensor:
    """Weights w (float64, n) such that the comparator's direction is Σ_i w_i g_i.

    torchjd errors (e.g. UPGrad's default projector needing quadprog) are re-raised as
    `OptionError` so a user sees one kind of configuration error for every strategy problem.
    """
    weighting = _weighting(name)
    try:
        weights = weighting(gram.to(torch.float64))
    except ImportError as exc:  # an optional solver of an optional dependency
        raise OptionError("strategy", f"strategy {name!r}: {exc}") from exc
    return torch.as_tensor(weights, dtype=torch.float64).reshape(-1).cpu()
