"""Allocation algorithms behind one interface (``Allocator``), all scored by ``apportion.core.evaluate``.

Importing this package loads nothing heavy: ``registry`` knows every algorithm by name, and
the classes load when used.
"""

from __future__ import annotations

import importlib

from apportion.core.algorithms.registry import REGISTERED as ALGORITHMS
from apportion.core.algorithms.registry import algorithm_names, register

_LAZY = {"AllocationResult": "apportion.core.algorithms.base", "Allocator": "apportion.core.algorithms.base",
         "get_allocator": "apportion.core.algorithms.base"}

__all__ = ["ALGORITHMS", "AllocationResult", "Allocator", "algorithm_names", "get_allocator", "register"]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
