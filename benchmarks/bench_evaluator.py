"""Evaluator throughput and scaling, as ratios against references run in the same process.

Reference workload: 1,000 tasks, ~3,000 edges, 8 heterogeneous nodes. Prints a table and
one JSON line. Targets (issue 2): >= 100,000 plan evaluations per second on one core, >= 30x
the plain-Python evaluator, linear in tasks + edges up to 20,000 tasks on 256 nodes, with
memory <= 1 GB there. The one-core rate is also measured with a (P, n) order matrix, as
NSGA-II passes it (the evaluator then groups the rows by order).

    python benchmarks/bench_evaluator.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core.evaluate import Evaluator  # noqa: E402
from apportion.core.model import Instance  # noqa: E402
from apportion.core.synthetic import random_cluster, random_workload  # noqa: E402
from tests.reference.naive_evaluate import naive_stats  # noqa: E402


def random_plans(instance: Instance, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    choice = [instance.eligible_nodes(t) for t in range(instance.n_tasks)]
    return np.array([[c[rng.integers(len(c))] for c in choice] for _ in range(count)], dtype=np.int32)


def evals_per_second(evaluator: Evaluator, plans: np.ndarray, order: np.ndarray, min_seconds: float) -> float:
    """Best of several timed batches (CPU time of this process), after a warm-up call."""
    evaluator.stats(plans, order, check=False)
    best = np.inf
    for _ in range(5):
        reps, started = 0, time.process_time()
        while (elapsed := time.process_time() - started) < min_seconds / 5:
            evaluator.stats(plans, order, check=False)
            reps += 1
        best = min(best, elapsed / (reps * len(plans)))
    return 1.0 / best


def reference_case(quick: bool) -> dict:
    inst = Instance.build(random_workload(1000, 3000, seed=1, n_requests=10), random_cluster(8, seed=1))
    plans = random_plans(inst, 100, seed=2)
    order = inst.topo_order
    serial = evals_per_second(Evaluator(inst), plans, order, 1.0 if quick else 3.0)
    order_matrix = evals_per_second(Evaluator(inst), plans, np.broadcast_to(order, plans.shape).copy(),
                                    1.0 if quick else 3.0)
    parallel = evals_per_second(Evaluator(inst, parallel=True), plans, order, 1.0 if quick else 3.0)
    count = 3 if quick else 10
    started = time.process_time()
    for i in range(count):
        naive_stats(inst, plans[i], order)
    python = count / (time.process_time() - started)
    return {
        "tasks": inst.n_tasks, "edges": inst.n_edges, "nodes": inst.n_nodes,
        "evals_per_s": serial, "evals_per_s_order_matrix": order_matrix, "evals_per_s_parallel": parallel, "python_evals_per_s": python,
        "ns_per_task_edge": 1e9 / serial / (inst.n_tasks + inst.n_edges),
        "ratio_vs_python": serial / python,
    }


def scaling_case(n_tasks: int, n_nodes: int, quick: bool) -> dict:
    inst = Instance.build(random_workload(n_tasks, 3 * n_tasks, seed=3, n_requests=max(1, n_tasks // 100)),
                          random_cluster(n_nodes, seed=3, n_zones=4))
    plans = random_plans(inst, 20, seed=4)
    rate = evals_per_second(Evaluator(inst), plans, inst.topo_order, 0.5 if quick else 1.5)
    return {"tasks": n_tasks, "edges": inst.n_edges, "nodes": n_nodes,
            "ns_per_task_edge": 1e9 / rate / (inst.n_tasks + inst.n_edges)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings (for CI smoke runs)")
    args = parser.parse_args()

    ref = reference_case(args.quick)
    sizes = [(1000, 8), (5000, 32), (20000, 256)]
    scaling = [scaling_case(n, m, args.quick) for n, m in sizes]
    base = scaling[0]["ns_per_task_edge"]
    for row in scaling:
        row["ratio_to_1000"] = row["ns_per_task_edge"] / base
    # Exponent of a power-law fit of the time per evaluation against tasks + edges (1.0 = linear).
    items = np.array([row["tasks"] + row["edges"] for row in scaling], dtype=float)
    seconds = items * np.array([row["ns_per_task_edge"] for row in scaling])
    exponent = float(np.polyfit(np.log(items), np.log(seconds), 1)[0])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("Evaluator, 1,000 tasks / 3,000 edges / 8 nodes")
    print(f"  compiled, one core     {ref['evals_per_s']:>12,.0f} evals/s  ({ref['ns_per_task_edge']:.2f} ns per task+edge)")
    print(f"  same, (P, n) orders    {ref['evals_per_s_order_matrix']:>12,.0f} evals/s")
    print(f"  compiled, parallel     {ref['evals_per_s_parallel']:>12,.0f} evals/s")
    print(f"  plain Python reference {ref['python_evals_per_s']:>12,.1f} evals/s")
    print(f"  ratio compiled/Python  {ref['ratio_vs_python']:>12,.0f}x")
    print("Scaling (cost per task+edge relative to 1,000 tasks; 1.0 = linear)")
    print(f"  {'tasks':>6} {'edges':>6} {'nodes':>5} {'ns/(task+edge)':>15} {'ratio':>6}")
    for row in scaling:
        print(f"  {row['tasks']:>6} {row['edges']:>6} {row['nodes']:>5} {row['ns_per_task_edge']:>15.2f} "
              f"{row['ratio_to_1000']:>6.2f}")
    print(f"  time per evaluation grows as (tasks + edges) ^ {exponent:.2f} over these sizes (1.00 = linear)")
    print(f"Peak memory of this process: {peak_mb:,.0f} MB")
    print(json.dumps({"benchmark": "evaluator", "reference": ref, "scaling": scaling, "scaling_exponent": exponent,
                      "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
