"""Trained runs as Python objects: a run directory's network, config and results, and export.

One place reads what ``nestdsl train`` wrote (the spec copy, ``final.pt``, ``config.json``,
``results.json``), so ``compile --emit export --weights`` and :func:`load_run` agree on what a
run holds and refuse mismatched weights with the same diagnostic (E904).

>>> run = load_run("runs/dw")  # doctest: +SKIP
>>> run.net(x)[-1]             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nestdsl.diagnostics import Diagnostic, NestError
from nestdsl.ir import NestIR

if TYPE_CHECKING:
    from torch import nn

    from nestdsl.data import DataSplit
    from nestdsl.train.config import TrainConfig
    from nestdsl.train.runs import RunResults


@dataclass(frozen=True)
class TrainedRun:
    """A finished run, loaded: the network with its trained weights, its config and results.

    ``net`` is the nested network (or, for a ``--standalone K`` run, the standalone D_K; for
    an ``--oracle K`` run, the Oracle) in eval mode; ``results`` are the per-stage validation
    numbers the run printed.
    """

    path: Path
    net: nn.Module
    config: TrainConfig
    results: RunResults


def load_run(path: str | Path) -> TrainedRun:
    """Load the run in ``path`` (a ``nestdsl train`` run directory) for inference or export."""
    from nestdsl.compiler import compile as compile_net
    from nestdsl.load import load
    from nestdsl.train.config import make_config
    from nestdsl.train.runs import FINAL, SPEC_COPY, RunDir, read_results

    run = RunDir(path)
    weights = run.file(FINAL)
    if not weights.is_file():
        _no_weights(weights, FINAL)
    config = make_config(**(run.read_config().get("config") or {}))
    spec = load(run.file(SPEC_COPY))
    if config.oracle is not None:  # the run keeps the nested spec its Oracle came from
        from nestdsl.oracle import oracle

        spec = oracle(spec, config.oracle)
    net: nn.Module = compile_net(spec)
    if config.standalone is not None:
        net = net.subnetwork(config.standalone)  # type: ignore[operator]
    load_weights(net, weights)
    return TrainedRun(run.path, net.eval(), config, read_results(run.path))


@dataclass(frozen=True)
class Model:
    """A trained network for inference (``eval``, ``run``), with the data it was trained on.

    ``source`` names where the network came from (the run directory or the spec) in reports;
    ``data`` and ``seed`` rebuild the run's data, so inputs are preprocessed as in training.
    """

    net: nn.Module
    data: str
    seed: int
    source: str

    def datasets(self) -> DataSplit:
        """The run's train / validation / test sets, unaugmented, at the network's input."""
        from nestdsl.data import build_datasets
        from nestdsl.train.config_checks import check_classes

        shape = self.net.input_shape
        split = build_datasets(self.data, shape, augment=False, seed=self.seed)  # type: ignore[arg-type]
        check_classes(split, int(self.net.num_classes))  # type: ignore[arg-type]
        return split


def load_model(target: Path, *, weights: Path | None = None, data: str | None = None) -> Model:
    """A run directory, or a spec with ``weights`` (a state-dict file or a run directory).

    ``data`` overrides the data source (for a spec it defaults to the bundled digits, the
    default of ``nestdsl train``).
    """
    if weights is None:
        if not target.is_dir():
            _spec_without_weights(target)
        run = load_run(target)
        return Model(run.net, data or run.config.data, run.config.seed, str(target))
    if target.is_dir():
        _spec_without_weights(target)
    from nestdsl.compiler import compile as compile_net
    from nestdsl.data import DEFAULT_SOURCE
    from nestdsl.load import load

    net = compile_net(load(target))
    load_weights(net, weights)
    return Model(net.eval(), data or DEFAULT_SOURCE, 0, str(target))


def _spec_without_weights(target: Path) -> NoReturn:
    raise NestError(
        [
            Diagnostic(
                code="E910",
                message=f"`{target}` is not a run directory"
                if not target.is_dir()
                else f"`{target}` is a run directory, but --weights needs a spec",
                help="give a finished run directory, or a `.nest` spec with --weights FILE",
            )
        ]
    )


def _no_weights(path: Path, final: str) -> NoReturn:
    raise NestError(
        [
            Diagnostic(
                code="E904",
                message=f"no weights at `{path}`",
                help=f"give a finished run directory (holding `{final}`) or a state-dict file",
            )
        ]
    )


def load_weights(net: nn.Module, weights: Path) -> None:
    """Load trained weights (a run directory or a state-dict file) into ``net``.

    Files are read with ``weights_only=True``, so loading never runs pickled code; weights of
    another network are a user error (E904), not a traceback.
    """
    from nestdsl.train.runs import FINAL, load_tensors

    path = weights / FINAL if weights.is_dir() else weights
    if not path.is_file():
        _no_weights(path, FINAL)
    state = load_tensors(path)
    notes = _mismatches(net.state_dict(), state)
    if notes:
        raise NestError(
            [
                Diagnostic(
                    code="E904",
                    message=f"the weights in `{path}` do not fit this spec",
                    help="export with the spec the run was trained on",
                    notes=notes,
                )
            ]
        )
    net.load_state_dict(state)


def _mismatches(expected: dict[str, Any], given: object) -> tuple[str, ...]:
    """What differs between a network's state and loaded tensors, one short note per kind."""
    if not isinstance(given, dict):
        return ("the file holds no state dict",)
    groups = {
        "missing": [k for k in expected if k not in given],
        "unexpected": [k for k in given if k not in expected],
        "of another shape": [
            k
            for k in expected
            if k in given and tuple(getattr(given[k], "shape", ())) != tuple(expected[k].shape)
        ],
    }
    return tuple(
        f"{len(keys)} tensor{'s' if len(keys) != 1 else ''} {kind}, e.g. `{keys[0]}`"
        for kind, keys in groups.items()
        if keys
    )


def export_program(ir: NestIR, stage: int, path: Path, weights: Path | None) -> None:
    """Save D_stage as a ``torch.export`` program (load with ``torch.export.load``).

    The batch dimension is dynamic, so the saved program serves any batch size. ``weights``
    (a run directory or a state-dict file) gives the trained parameters; without it the
    program holds freshly initialised ones, which is only useful to inspect the graph.
    """
    import torch

    from nestdsl.compiler import compile as compile_net

    net = compile_net(ir).eval()
    if weights is not None:
        load_weights(net, weights)
    sub = net.subnetwork(stage).eval()
    example = torch.zeros(2, *ir.input_shape)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(sub, (example,), dynamic_shapes=({0: batch},))
    try:
        torch.export.save(program, str(path))
    except OSError as error:
        raise NestError(
            [Diagnostic(code="E905", message=f"cannot write `{path}`: {error.strerror}")]
        ) from None
