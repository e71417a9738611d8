"""Constructive baselines at scale: time against size on many independent ready tasks.

Issue 9: seeding NSGA-II with the baselines was quadratic in the number of independent ready
tasks (10,000 independent pairs: 23 s, 20,000: 89 s), from min-min's stale heap entries and
HEFT's walks along each node's timeline. Workload: P independent pairs a_i -> b_i (10 MB),
works 10-16 and 5-9 GFLOP, on 8 heterogeneous nodes with links of 100 MB/s. Prints a table of
wall seconds per baseline at 5,000 / 10,000 / 20,000 pairs and the exponent of a power-law fit
of time against tasks (1.0 = linear, 2.0 = quadratic), then one JSON line.

    python benchmarks/bench_baselines.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core.algorithms.baselines import BASELINES  # noqa: E402
from apportion.core.model import Cluster, Edge, Instance, Node, Task, Workload  # noqa: E402

PAIRS = (5_000, 10_000, 20_000)
QUICK_PAIRS = (500, 1_000, 2_000)


def independent_pairs(pairs: int) -> Instance:
    tasks = [Task(f"a{i}", 10.0 + i % 7) for i in range(pairs)] + [Task(f"b{i}", 5.0 + i % 5) for i in range(pairs)]
    edges = [Edge(f"a{i}", f"b{i}", 10.0) for i in range(pairs)]
    nodes = tuple(Node(f"n{j}", "cpu", 10.0 + 3.0 * j, 64.0) for j in range(8))
    return Instance.build(Workload(tuple(tasks), tuple(edges)), Cluster(nodes, default_bandwidth=100.0))


def wall(fn) -> float:
    """Best wall seconds of two calls (after a warm-up call loads the compiled kernels)."""
    fn()
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def exponent(sizes, seconds) -> float:
    """Slope of log(seconds) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-9)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 / 1,000 / 2,000 pairs")
    args = parser.parse_args()
    sizes = QUICK_PAIRS if args.quick else PAIRS
    instances = [independent_pairs(p) for p in sizes]
    seconds = {cls.name: [wall(lambda inst=inst, cls=cls: cls().build(inst, 0)) for inst in instances]
               for cls in BASELINES}
    seconds["all"] = [float(sum(column)) for column in zip(*seconds.values(), strict=True)]
    tasks = [inst.n_tasks for inst in instances]
    fits = {name: exponent(tasks, s) for name, s in seconds.items()}

    print("independent pairs on 8 nodes: wall seconds per baseline (best of 2); exponent of time vs tasks")
    print(f"{'baseline':16s}" + "".join(f"{p:>12,d}" for p in sizes) + f"{'exponent':>10s}")
    for name, row in seconds.items():
        print(f"{name:16s}" + "".join(f"{x:12.4f}" for x in row) + f"{fits[name]:10.2f}")
    print(json.dumps({"benchmark": "baselines", "pairs": list(sizes), "tasks": tasks, "nodes": 8,
                      "seconds": seconds, "exponent": fits}))


if __name__ == "__main__":
    main()
