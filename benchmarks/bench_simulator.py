"""Execution simulator speed: 1,000 Monte Carlo samples of a 1,000-task plan on 16 nodes.

Reference case: 1,000 tasks, ~3,000 edges, 16 heterogeneous nodes, HEFT's plan, with duration
noise, link noise and slowdowns, and node failures on (both failure rules). Prints a table and
one JSON line. Target (issue 4): <= 2 s for the 1,000 samples on one core; the ratio to the
plain-Python simulator (the tests' reference, run on a few samples in this process) is printed
alongside.

    python benchmarks/bench_simulator.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core.algorithms.heft import HeftAllocator  # noqa: E402
from apportion.core.evaluate import Evaluator  # noqa: E402
from apportion.core.model import Instance  # noqa: E402
from apportion.core.simulate import Uncertainty, simulate  # noqa: E402
from apportion.core.synthetic import random_cluster, random_workload  # noqa: E402
from tests.reference.naive_simulate import reference_sample  # noqa: E402

TARGET_SECONDS = 2.0
SAMPLES = 1000


def timed(fn, repeats: int) -> float:
    """Best CPU seconds of this process over ``repeats`` calls, after a warm-up call."""
    fn()
    best = np.inf
    for _ in range(repeats):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def wall(fn, repeats: int) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def case(inst: Instance, plan, rule: str, quick: bool) -> dict:
    unc = Uncertainty(duration_sigma=0.3, transfer_sigma=0.2, link_slowdown_probability=0.05,
                      link_slowdown_factor=3.0, mtbf=1800.0, repair_mean=60.0, failure_rule=rule)
    repeats = 1 if quick else 3
    seconds = timed(lambda: simulate(inst, plan, unc, SAMPLES, seed=1), repeats)
    parallel = wall(lambda: simulate(inst, plan, unc, SAMPLES, seed=1, parallel=True), repeats)
    result = simulate(inst, plan, unc, SAMPLES, seed=1)
    python_samples = 1 if quick else 3
    started = time.process_time()
    for s in range(python_samples):
        reference_sample(inst, plan, unc, result.key, s)
    python_per_sample = (time.process_time() - started) / python_samples
    summary = result.summary()
    return {
        "rule": rule, "samples": SAMPLES, "seconds": seconds, "samples_per_s": SAMPLES / seconds,
        "ratio_to_target": seconds / TARGET_SECONDS, "parallel_wall_seconds": parallel,
        "python_seconds_per_sample": python_per_sample,
        "ratio_vs_python": python_per_sample * SAMPLES / seconds,
        "failed_tasks_mean": summary["failed_tasks"]["mean"], "moved_tasks_mean": summary["moved_tasks"]["mean"],
        "completion_rate_mean": summary["completion_rate"]["mean"],
        "makespan_p50": summary["makespan"]["p50"], "makespan_p95": summary["makespan"]["p95"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing per case (for CI smoke runs)")
    args = parser.parse_args()

    inst = Instance.build(random_workload(1000, 3000, seed=1, n_requests=10), random_cluster(16, seed=1))
    plan = HeftAllocator().build(inst)
    static = Evaluator(inst).schedule(plan).stat("makespan")
    zero = timed(lambda: simulate(inst, plan, None, SAMPLES, seed=1), 1 if args.quick else 3)
    rows = [case(inst, plan, rule, args.quick) for rule in ("retry", "backup")]

    print(f"Simulator, {inst.n_tasks} tasks / {inst.n_edges} edges / {inst.n_nodes} nodes, HEFT plan "
          f"(static makespan {static:.1f} s), {SAMPLES} samples, Numba threads {numba.get_num_threads()}")
    print(f"  no noise, one core: {zero:.3f} s")
    print(f"  {'rule':>7} {'seconds':>8} {'samples/s':>10} {'vs 2 s':>7} {'parallel':>9} {'Python s/sample':>16} "
          f"{'vs Python':>10} {'failed':>7} {'moved':>6} {'p50':>7} {'p95':>7}")
    for r in rows:
        print(f"  {r['rule']:>7} {r['seconds']:>8.3f} {r['samples_per_s']:>10,.0f} {r['ratio_to_target']:>7.3f} "
              f"{r['parallel_wall_seconds']:>9.3f} {r['python_seconds_per_sample']:>16.3f} "
              f"{r['ratio_vs_python']:>9,.0f}x {r['failed_tasks_mean']:>7.2f} {r['moved_tasks_mean']:>6.2f} "
              f"{r['makespan_p50']:>7.1f} {r['makespan_p95']:>7.1f}")
    print(f"  seconds: CPU time on one core (best of {1 if args.quick else 3}); parallel: wall time on Numba threads;")
    print("  failed/moved: mean tasks per sample; p50/p95: realised makespan, s")
    print(json.dumps({"benchmark": "simulator", "tasks": inst.n_tasks, "edges": inst.n_edges, "nodes": inst.n_nodes,
                      "static_makespan": static, "no_noise_seconds": zero, "cases": rows}))


if __name__ == "__main__":
    main()
