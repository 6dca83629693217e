"""Lazy re-exports for the packages' ``__init__`` (PEP 562): importing one module of a
package (``tagger.model.features`` for the tokeniser alone) does not import its siblings."""

from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``where[name]`` (a submodule) on first use."""

    def __getattr__(name: str):
        if name in where:
            return getattr(import_module(f".{where[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
