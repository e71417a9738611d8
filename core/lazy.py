"""Package attributes that import their module on first use.

DAG files and the Airflow API server import ``apportion.operators`` (and through it
``apportion.core``) while they parse; the names these packages export load NumPy, Numba,
pymoo or MLflow only when something uses them.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package``: ``exports`` maps each name to the
    module that defines it."""
    def __getattr__(name: str):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(module), name)

    return __getattr__
