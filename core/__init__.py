"""Apportion's allocation core: workflow and cluster model, compiled evaluator, optimisers."""

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
