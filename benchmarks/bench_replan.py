"""Re-planning speed and quality: a plan in progress meets a change; plan the ~1,000 tasks left.

Reference case: ``random_workload(1400, 4200, seed=1, n_requests=20)`` on ``random_cluster(16,
seed=1)``, planned once by NSGA-II (population 100 x 100 generations, knee plan). At the time
when 1,000 tasks have not started yet, each change in turn — the busiest node fails for good,
a GPU joins, 50 urgent tasks arrive — is re-planned with ``core.replan.replan``, warm-started
from the first run's whole front (and, as ``apportion replan`` does, from the chosen plan
alone), at population 50 x 40 generations. Target (issue): <= 1 s for
1,000 remaining tasks. Prints a table and one JSON line.

Per change: the median wall seconds of ``replan`` over a few runs after a warm-up (and where
they go: residual instance, HEFT fallback, carrying the old front over, the search); the tasks
left; the makespan of the old plan carried over unchanged, of a cold re-plan (no warm start,
same budget) and of the warm re-plan (knee plan and fastest plan on the front); tasks moved
off a node that still works, with and without the ``migrations`` objective.

    python benchmarks/bench_replan.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.api import Settings, optimize
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Edge, Instance, Request, Workload
from apportion.core.replan import (
    NodeFailure,
    NodeJoin,
    UrgentRequests,
    carry_over,
    carry_over_all,
    replan,
    residual_instance,
)
from apportion.core.synthetic import random_cluster, random_workload

TARGET_SECONDS = 1.0
REMAINING = 1000
BASE = ("makespan", "utilization", "imbalance")
WITH_MIGRATIONS = BASE + ("migrations",)


def urgent_requests(instance: Instance, schedule, now: float, count: int, seed: int) -> UrgentRequests:
    """``count`` new tasks in one high-priority request; five of them read outputs of tasks
    that finished before ``now``."""
    small = random_workload(count, 2 * count, seed=seed)
    tasks = tuple(replace(t, id=f"urgent-{t.id}", request="urgent", priority=3.0) for t in small.tasks)
    edges = [Edge(f"urgent-{e.source}", f"urgent-{e.target}", e.data) for e in small.edges]
    finished = np.flatnonzero(schedule.end <= now)
    rng = np.random.default_rng(seed)
    for source, target in zip(rng.choice(finished, 5, replace=False), range(5), strict=True):
        edges.append(Edge(instance.task_ids[source], tasks[target].id, 10.0))
    return UrgentRequests(Workload(tasks=tasks, edges=tuple(edges), requests=(Request("urgent", priority=3.0),),
                                   name="urgent"))


def median_seconds(fn, repeats: int) -> tuple[float, list[float], float]:
    """(median wall seconds, every run's wall seconds, median CPU seconds of this process) of
    ``repeats`` calls after a warm-up call (compilation caches, layouts). CPU time leaves out
    waiting for the other processes on the shared cores."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return float(np.median(times)), times, float(np.median(cpu))


def makespans(result) -> tuple[float, float]:
    """(knee plan's makespan, fastest makespan on the front)."""
    return result.chosen.stat("makespan"), float(result.front_stats[:, STAT_INDEX["makespan"]].min())


def case(name, instance, first, now, changes, budget: Settings, repeats: int) -> dict:
    plan = first.chosen.plan
    settings = replace(budget, objectives=WITH_MIGRATIONS)

    def warm():
        return replan(instance, plan, now, changes, settings=settings, previous_plans=first.front)

    seconds, times, cpu_seconds = median_seconds(warm, repeats)
    residual, result = warm()
    # As `apportion replan` does: warm-started from the chosen plan alone.
    plan_only, _, _ = median_seconds(lambda: replan(instance, plan, now, changes, settings=settings), repeats)

    # Where the time goes (each part timed once more, outside the median).
    started = time.perf_counter()
    residual_instance(instance, plan, now, changes)
    t_residual = time.perf_counter() - started
    started = time.perf_counter()
    fallback = HeftAllocator().build(residual)
    t_fallback = time.perf_counter() - started
    started = time.perf_counter()
    seeds = carry_over_all([plan, *first.front], instance, residual, fallback)
    t_carry = time.perf_counter() - started
    started = time.perf_counter()
    optimize(residual, settings, initial_plans=seeds)
    t_optimize = time.perf_counter() - started

    carried = Evaluator(residual).schedule(carry_over(plan, instance, residual, fallback))
    cold = optimize(residual, settings)
    _, no_migrations = replan(instance, plan, now, changes, settings=replace(budget, objectives=BASE),
                              previous_plans=first.front)
    warm_knee, warm_best = makespans(result)
    cold_knee, cold_best = makespans(cold)
    return {
        "change": name, "remaining_tasks": int((residual.pinned_node < 0).sum()),
        "pinned_tasks": int((residual.pinned_node >= 0).sum()), "tasks": residual.n_tasks,
        "nodes": residual.n_nodes, "seconds": seconds, "seconds_runs": times, "cpu_seconds": cpu_seconds,
        "ratio_to_target": seconds / TARGET_SECONDS,
        "parts": {"residual_instance": t_residual, "heft_fallback": t_fallback,
                  "carry_over_front": t_carry, "optimize": t_optimize},
        "seconds_plan_only": plan_only,
        "seeds": len(seeds), "distinct_seed_orders": len({p.order.tobytes() for p in (plan, *first.front)}),
        "evaluations": result.evaluations, "pareto_size": result.pareto_size,
        "carried_over_makespan": carried.stat("makespan"), "carried_over_moved": carried.stat("moved"),
        "warm_knee_makespan": warm_knee, "warm_best_makespan": warm_best,
        "cold_knee_makespan": cold_knee, "cold_best_makespan": cold_best,
        "moved_with_migrations": result.chosen.stat("moved"),
        "moved_without_migrations": no_migrations.chosen.stat("moved"),
        "makespan_without_migrations": no_migrations.chosen.stat("makespan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small first run and two timings (smoke run)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    repeats = 2 if args.quick else 5

    instance = Instance.build(random_workload(1400, 4200, seed=1, n_requests=20), random_cluster(16, seed=1))
    first_budget = Settings(population=40, generations=20) if args.quick else Settings(population=100, generations=100)
    started = time.perf_counter()
    first = optimize(instance, first_budget)
    first_seconds = time.perf_counter() - started
    schedule = first.chosen
    now = float(np.sort(schedule.start)[instance.n_tasks - REMAINING])
    busiest = int(np.argmax(np.bincount(schedule.plan.assignment[schedule.start >= now], minlength=instance.n_nodes)))
    gpus = [nd for nd in instance.cluster.nodes if nd.kind == "gpu"]
    fastest_gpu = max(gpus, key=lambda nd: nd.speed)
    changes = {
        "node fails": [NodeFailure(instance.node_ids[busiest])],
        "node joins": [NodeJoin(replace(fastest_gpu, id="joined-gpu"))],
        "50 urgent tasks": [urgent_requests(instance, schedule, now, 50, seed=7)],
    }
    budget = Settings(population=50, generations=40)
    rows = [case(name, instance, first, now, change, budget, repeats) for name, change in changes.items()]
    load_after = os.getloadavg()

    print(f"Re-planning, {instance.n_tasks} tasks / {instance.n_edges} edges / {instance.n_nodes} nodes; first plan: "
          f"NSGA-II {first_budget.population} x {first_budget.generations} in {first_seconds:.1f} s, knee makespan "
          f"{schedule.stat('makespan'):.1f} s, front {first.pareto_size} plans")
    print(f"  at t = {now:.1f} s ({REMAINING} tasks not started); re-plan: NSGA-II {budget.population} x "
          f"{budget.generations}, objectives {' '.join(WITH_MIGRATIONS)}, warm-started from the first front; "
          f"median of {repeats} runs after a warm-up")
    print(f"  {'change':<16} {'left':>5} {'seconds':>8} {'vs 1 s':>7} {'CPU s':>6} {'carry':>6} {'search':>7} {'1 seed':>7} "
          f"{'carried':>8} {'cold':>8} {'warm':>8} {'cold best':>9} {'warm best':>9} {'moved':>6} {'no-mig':>7}")
    for r in rows:
        print(f"  {r['change']:<16} {r['remaining_tasks']:>5} {r['seconds']:>8.3f} {r['ratio_to_target']:>7.2f} {r['cpu_seconds']:>6.3f} "
              f"{r['parts']['carry_over_front']:>6.2f} {r['parts']['optimize']:>7.2f} {r['seconds_plan_only']:>7.3f} "
              f"{r['carried_over_makespan']:>8.1f} {r['cold_knee_makespan']:>8.1f} {r['warm_knee_makespan']:>8.1f} "
              f"{r['cold_best_makespan']:>9.1f} {r['warm_best_makespan']:>9.1f} {r['moved_with_migrations']:>6.0f} "
              f"{r['moved_without_migrations']:>7.0f}")
    print("  left: tasks to place (not started, lost, new); seconds: wall, whole replan call (CPU s: its CPU time); carry: carrying the old "
          f"front over ({rows[0]['seeds']} plans, {rows[0]['distinct_seed_orders']} distinct orders); search: optimize; "
          "1 seed: whole replan warm-started from the chosen plan alone (as the CLI)")
    print("  carried: makespan of the old plan carried over; cold/warm: knee makespan without/with the warm start; "
          "best: fastest on the front")
    print("  moved: tasks moved off a working node by the warm knee plan; no-mig: the same without the migrations "
          "objective")
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 shared cores)")
    print(json.dumps({"benchmark": "replan", "tasks": instance.n_tasks, "edges": instance.n_edges,
                      "nodes": instance.n_nodes, "at": now, "first_budget": [first_budget.population,
                                                                             first_budget.generations],
                      "first_seconds": first_seconds, "first_makespan": schedule.stat("makespan"),
                      "first_front": first.pareto_size, "budget": [budget.population, budget.generations],
                      "repeats": repeats, "target_seconds": TARGET_SECONDS, "cases": rows,
                      "load_average_before": load_before, "load_average_after": load_after}))


if __name__ == "__main__":
    main()
