"""Allocation algorithms behind one interface (``Allocator``), all scored by ``apportion.core.evaluate``.

Importing this package loads nothing heavy: ``registry`` knows every algorithm by name, and
the classes load when used.
"""

from __future__ import annotations

from apportion.core.algorithms.registry import REGISTERED as ALGORITHMS
from apportion.core.algorithms.registry import algorithm_names, register
from apportion.core.lazy import lazy_exports

_LAZY = {"AllocationResult": "apportion.core.algorithms.base", "Allocator": "apportion.core.algorithms.base",
         "get_allocator": "apportion.core.algorithms.base"}

__all__ = ["ALGORITHMS", "AllocationResult", "Allocator", "algorithm_names", "get_allocator", "register"]
__getattr__ = lazy_exports(__name__, _LAZY)
