"""Apportion's allocation core: workflow and cluster model, compiled evaluator, optimisers."""

import os

# One OpenBLAS thread unless told otherwise (before NumPy loads it): nothing here makes large
# BLAS calls, and the worker threads of NumPy's and SciPy's OpenBLAS copies spin as they start,
# ~0.1 s of a cold start on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from core.errors import SpecError
from core.model import Cluster, Edge, Instance, Link, Node, Request, Task, Workload

__all__ = [
    "Cluster",
    "Edge",
    "Instance",
    "Link",
    "Node",
    "Request",
    "SpecError",
    "Task",
    "Workload",
]
