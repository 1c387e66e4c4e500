"""A restricted unpickler for the CIFAR python batch files.

``pickle.load`` on an untrusted file runs whatever callable the file names. The CIFAR batches
only need numpy array reconstruction, so this unpickler resolves exactly those globals (both
numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` spellings, plus ``_codecs.encode``,
which protocol-2 pickles written by Python 3 use for bytes) and refuses every other one
before anything is imported or called.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from typing import Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global outside the allowed set."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.global_name = f"{module}.{name}"


def _numpy_internal(submodule: str, name: str) -> Any:
    """numpy's own reconstruction helper, wherever this numpy version keeps it."""
    try:
        module = importlib.import_module(f"numpy._core.{submodule}")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        module = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(module, name)


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = _numpy_internal(
            "multiarray", "_reconstruct"
        )
        table[(f"{package}.numeric", "_frombuffer")] = _numpy_internal("numeric", "_frombuffer")
    return table


ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays; refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(module, name) from None


def load(data: bytes) -> Any:
    """Unpickle ``data`` the way the CIFAR docs say (``encoding="bytes"``), restricted."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
