"""Package attributes imported on first use, so that importing a package costs nothing.

``nestdsl --help`` must not pay for PyTorch, lark or networkx, yet ``nestdsl.load``,
``nestdsl.compile`` or ``nestdsl.train.launch`` must work as soon as the package is imported.
A public name may also be the name of a submodule (``nestdsl.load`` the function and
``nestdsl/load.py``, ``nestdsl.train.launch`` and ``launch.py``); importing the submodule binds
it to the package attribute, which would hide the function. Each lazy name is therefore a
property of the package's module type: it wins over that binding, ignores modules assigned to
it, and still takes other assignments (``monkeypatch.setattr`` in tests).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import import_module
from types import ModuleType
from typing import Any


def _attribute(name: str, source: str) -> property:
    def get(package: ModuleType) -> Any:
        own = package.__dict__.get(name)
        return own if own is not None else getattr(import_module(source), name)

    def put(package: ModuleType, value: object) -> None:
        if not isinstance(value, ModuleType):  # the import system binding a submodule
            package.__dict__[name] = value

    return property(get, put, doc=f"`{source}.{name}`, imported on first use.")


def lazy_names(package: str, names: Mapping[str, str]) -> None:
    """Give ``package`` the attributes ``names`` (name -> module holding it), imported lazily."""
    namespace = {name: _attribute(name, source) for name, source in names.items()}
    sys.modules[package].__class__ = type("LazyPackage", (ModuleType,), namespace)
