"""Apportion's allocation core: workflow and cluster model, compiled evaluator, optimisers.

Importing the package loads nothing heavy (DAG files read ``apportion.core.defaults`` and
``apportion.core.algorithms.registry`` while they are parsed); the model classes below load
on first use.
"""

import os

from apportion.core.lazy import lazy_exports

# One OpenBLAS thread unless told otherwise (before NumPy loads it): nothing here makes large
# BLAS calls, and the worker threads of NumPy's and SciPy's OpenBLAS copies spin as they start,
# ~0.1 s of a cold start on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_EXPORTS = {
    "SpecError": "apportion.core.errors",
    **{name: "apportion.core.model" for name in ("Cluster", "Edge", "Instance", "Link", "Node", "Request", "Task",
                                                 "Workload")},
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
