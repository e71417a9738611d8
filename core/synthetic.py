"""Random layered workflows and heterogeneous clusters, for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from apportion.core.model import Cluster, Edge, Link, Node, Request, Task, Workload

NODE_KINDS = ("gpu", "cpu", "edge")


def random_workload(n_tasks: int, n_edges: int, *, seed: int, n_requests: int = 1,
                    kinds: tuple[str, ...] = ("cnn", "nlp", "etl"), max_memory: float = 16.0,
                    gpu_only_share: float = 0.0, deadline_share: float = 0.0) -> Workload:
    """A random DAG: tasks in random layers, edges only from earlier to later tasks."""
    rng = np.random.default_rng(seed)
    work = rng.lognormal(mean=3.0, sigma=1.0, size=n_tasks)
    memory = rng.uniform(0.1, max_memory, size=n_tasks)
    kind = rng.integers(0, len(kinds), size=n_tasks)
    request = np.sort(rng.integers(0, n_requests, size=n_tasks))
    gpu_only = rng.random(n_tasks) < gpu_only_share
    has_deadline = rng.random(n_tasks) < deadline_share
    tasks = tuple(
        Task(
            id=f"t{i}", work=float(work[i]), kind=kinds[kind[i]], memory=float(memory[i]),
            priority=float(rng.integers(1, 4)), request=f"r{request[i]}",
            deadline=float(work[i] * 2.0) if has_deadline[i] else None,
            allowed_kinds=("gpu",) if gpu_only[i] else None,
        )
        for i in range(n_tasks)
    )
    edges: dict[tuple[int, int], float] = {}
    if n_tasks > 1:
        target = min(n_edges, n_tasks * (n_tasks - 1) // 2)
        while len(edges) < target:
            k = target - len(edges)
            a = rng.integers(0, n_tasks, size=2 * k)
            b = rng.integers(0, n_tasks, size=2 * k)
            # Mostly local edges, as in real workflows, with a tail of long-range ones.
            near = rng.random(2 * k) < 0.8
            b = np.where(near, np.minimum(a + 1 + rng.integers(0, 20, size=2 * k), n_tasks - 1), b)
            for s, d, size in zip(a, b, rng.lognormal(2.0, 1.0, size=2 * k), strict=True):
                s, d = (int(s), int(d)) if s < d else (int(d), int(s))
                if s != d and (s, d) not in edges and len(edges) < target:
                    edges[(s, d)] = float(size)
    requests = tuple(Request(id=f"r{r}", release=float(r) * 0.5) for r in np.unique(request))
    return Workload(
        tasks=tasks,
        edges=tuple(Edge(f"t{s}", f"t{d}", size) for (s, d), size in sorted(edges.items())),
        requests=requests,
        name=f"random-{n_tasks}x{n_edges}-s{seed}",
    )


def random_cluster(n_nodes: int, *, seed: int, n_zones: int = 2) -> Cluster:
    """Heterogeneous nodes (GPUs fast at CNNs, CPUs, slow edge boxes) in a few zones."""
    rng = np.random.default_rng(seed)
    nodes = []
    for j in range(n_nodes):
        kind = NODE_KINDS[j % len(NODE_KINDS)]
        base = {"gpu": 40.0, "cpu": 10.0, "edge": 3.0}[kind]
        nodes.append(Node(
            id=f"n{j}", kind=kind, speed=float(base * rng.uniform(0.6, 1.4)),
            memory={"gpu": 40.0, "cpu": 64.0, "edge": 8.0}[kind], zone=f"z{j % n_zones}",
            busy_power={"gpu": 300.0, "cpu": 150.0, "edge": 15.0}[kind],
            idle_power={"gpu": 60.0, "cpu": 50.0, "edge": 5.0}[kind],
            cost_per_hour={"gpu": 2.5, "cpu": 0.4, "edge": 0.05}[kind],
        ))
    zones = sorted({nd.zone for nd in nodes})
    links = [Link(z, z, bandwidth=1250.0, latency=0.0005) for z in zones]
    links += [Link(a, b, bandwidth=125.0, latency=0.01) for i, a in enumerate(zones) for b in zones[i + 1:]]
    return Cluster(
        nodes=tuple(nodes), links=tuple(links),
        speed_factors={"gpu": {"cnn": 4.0, "etl": 0.25}, "edge": {"etl": 2.0}},
        name=f"random-{n_nodes}-s{seed}",
    )
