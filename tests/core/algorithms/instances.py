"""Random and hand-made instances the algorithm tests share."""

from __future__ import annotations

import dataclasses

import numpy as np

from apportion.core.model import Cluster, Instance, Link, Node, Task, Workload
from apportion.core.synthetic import random_cluster, random_workload

SHAPES = ("random", "uniform", "split", "single")


def small_instance(seed=3, n_tasks=40, n_edges=80, n_nodes=5, **workload):
    return Instance.build(random_workload(n_tasks, n_edges, seed=seed, **workload), random_cluster(n_nodes, seed=seed))


def make_cluster(shape: str, m: int, seed: int) -> Cluster:
    """``random``: heterogeneous; ``uniform``: identical nodes; ``split``: heterogeneous with
    no link between zones; ``single``: one node."""
    if shape == "single":
        return Cluster(nodes=(Node("solo", "cpu", speed=7.0, memory=64.0),))
    if shape == "uniform":
        return Cluster(
            nodes=tuple(Node(f"n{j}", "cpu", speed=10.0, memory=64.0) for j in range(m)),
            links=(Link("default", "default", bandwidth=500.0, latency=0.002),),
        )
    cluster = random_cluster(m, seed=seed)
    if shape == "split":
        cluster = dataclasses.replace(cluster, links=tuple(ln for ln in cluster.links if ln.a == ln.b))
    return cluster


def make_instance(n: int, e: int, m: int, seed: int, *, shape: str = "random", requests: int = 1,
                  zero_work: float = 0.0, zero_data: float = 0.0, gpu_only: float = 0.0) -> Instance:
    """A random workflow; ``gpu_only`` applies to the heterogeneous shapes (the others have no GPU)."""
    rng = np.random.default_rng(seed + 1)
    if shape in ("uniform", "single"):
        gpu_only = 0.0
    wl = random_workload(n, e, seed=seed, n_requests=requests, gpu_only_share=gpu_only, max_memory=8.0)
    tasks = tuple(dataclasses.replace(t, work=0.0) if rng.random() < zero_work else t for t in wl.tasks)
    edges = tuple(dataclasses.replace(d, data=0.0) if rng.random() < zero_data else d for d in wl.edges)
    return Instance.build(dataclasses.replace(wl, tasks=tasks, edges=edges), make_cluster(shape, m, seed))


def independent(n: int, m: int, *, work: float = 10.0, priorities=None) -> Instance:
    """``n`` identical tasks without edges on ``m`` identical nodes."""
    tasks = tuple(
        Task(f"t{i}", work=work, priority=1.0 if priorities is None else float(priorities[i])) for i in range(n)
    )
    return Instance.build(Workload(tasks=tasks), make_cluster("uniform", m, 0))
