"""``--torch-compile``: a training run through the network's joint pass compiled by inductor.

Only ``forward`` (the joint pass) is compiled. Training steps whose forward is the joint pass
(sgd, sgd-sum, ``--standalone``, ``--oracle``, and per-task strategies through the joint
graph) and every evaluation run through the compiled graph. Steps through the anytime graph
(the per-task strategies' default on a CPU) and greedy's stage-by-stage forward stay eager:
compiling each stage made those steps slower, because a compiled stage's backward recomputes
every earlier stage's (docs/performance.md).

The network itself is not modified: the run goes through ``torch.compile(net)``, a wrapper
that shares its parameters and buffers, so checkpoints, state dicts and the returned network
are those of the plain module, and a run may be resumed with or without compiling.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from typing import cast

import torch
from torch import nn

from nestdsl.diagnostics import fail
from nestdsl.train.config import TrainConfig

COMPILED_MODES: frozenset[str] = frozenset({"joint", "standalone"})
"""Step modes (``batch_step.mode_of``) whose forward is the joint pass, ``net(x)``."""


def check_available(config: TrainConfig, device: torch.device) -> None:
    """T019 before the run starts, instead of an inductor traceback at its first step (nothing
    to check without ``--torch-compile``)."""
    if not config.torch_compile:
        return
    if device.type == "cpu":
        compiler = os.environ.get("CXX", "g++")
        if shutil.which(compiler) is None:
            fail(
                "T019",
                f"--torch-compile on a CPU needs a C++ compiler, and `{compiler}` was not found",
                help="install one (Debian: apt-get install g++), name it in $CXX, or train "
                "without --torch-compile",
            )
    elif device.type == "cuda" and importlib.util.find_spec("triton") is None:
        fail(
            "T019",
            "--torch-compile on a GPU needs Triton, which is not installed",
            help="install PyTorch's CUDA build for Linux (it brings Triton) or `pip install "
            "triton`, or train without --torch-compile",
        )


def compiled_text(config: TrainConfig, mode: str) -> str | None:
    """What ``--torch-compile`` compiles in this run, in the banner's words (None: off)."""
    if not config.torch_compile:
        return None
    if mode in COMPILED_MODES:
        return "joint pass, for training steps and evaluation (the first steps compile it)"
    why = "greedy trains stage by stage" if mode == "greedy" else "the anytime graph runs eagerly"
    return f"joint pass, for evaluation only ({why}; --task-graph joint compiles the steps)"


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """``model`` or its compiled wrapper; ``anytime`` and every other attribute still resolve
    on the wrapper (it forwards them to ``model``), eagerly."""
    return cast(nn.Module, torch.compile(model)) if enabled else model


def compiling(enabled: bool) -> contextlib.AbstractContextManager[object]:
    """Settings the compiled graphs of a run need while they are built.

    Per-task strategies call the joint graph's backward once per stage (``retain_graph``),
    which AOTAutograd allows only when the backward does not reuse ("donate") the buffers
    of its saved tensors.
    """
    if not enabled:
        return contextlib.nullcontext()
    from torch._functorch import config as functorch_config

    return functorch_config.patch(donated_buffer=False)
