"""NSGA-II optimiser speed: the reference workload (1000 tasks, 3000 edges, 8 nodes),
population 100 x 200 generations.

Prints a table and one JSON line: seconds per run (median; CPU seconds too, as the machine
may be shared), evaluations/s, the split between plan evaluation (``Evaluator.stats``),
baseline seeding and pymoo's own loop, the cold start (first run in a fresh process, Numba cache warm), and the ratio to a lean stock pymoo NSGA-II
(IntegerRandomSampling + SBX + PM with RoundingRepair, plus an eligibility repair, pymoo's
RankAndCrowding and tournament, no duplicate elimination: pymoo's default pairwise one
would add its O(P^2 n) distance matrices) on the same problem in the same process.

    python benchmarks/bench_optimizer.py            # reference workload
    python benchmarks/bench_optimizer.py --quick    # small, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from core.evaluate import Evaluator
from core.model import Instance
from core.synthetic import random_cluster, random_workload


class Stopwatch:
    """Accumulates the wall time spent in wrapped callables."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, func):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def build(args) -> Instance:
    return Instance.build(random_workload(args.tasks, args.edges, seed=args.seed),
                          random_cluster(args.nodes, seed=args.seed))


def timed_run(instance: Instance, args) -> dict:
    """One NSGA-II run on a fresh evaluator, with the time split by component."""
    import core.algorithms.nsga as nsga

    evaluator = Evaluator(instance)
    in_evaluator, in_baselines = Stopwatch(), Stopwatch()
    evaluator.stats = in_evaluator.wrap(evaluator.stats)
    seed_baselines = nsga.baseline_plans
    nsga.baseline_plans = in_baselines.wrap(seed_baselines)
    try:
        allocator = nsga.NSGA2Allocator(population=args.population, generations=args.generations)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = allocator.allocate(evaluator, seed=args.seed)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        nsga.baseline_plans = seed_baselines
    loop = seconds - in_evaluator.seconds - in_baselines.seconds
    return {
        "seconds": seconds, "cpu_seconds": cpu, "evaluator": in_evaluator.seconds,
        "baselines": in_baselines.seconds, "pymoo": loop,
        "evaluations": result.evaluations, "front": len(result.plans), "result": result,
    }


def stock_run(instance: Instance, args) -> tuple[float, np.ndarray]:
    """pymoo's stock integer NSGA-II (lean: no duplicate elimination) on the same problem;
    returns (seconds, final F)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    from core.algorithms.nsga import ParetoArchive, PlanProblem, order_pool
    from core.algorithms.operators import EligibilityRepair, PlanCodec
    from core.pareto import DEFAULT_OBJECTIVES

    evaluator = Evaluator(instance)
    codec = PlanCodec(instance, order_pool(instance))
    problem = PlanProblem(evaluator, codec, DEFAULT_OBJECTIVES, ParetoArchive())
    algorithm = NSGA2(
        pop_size=args.population, sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        repair=EligibilityRepair(codec), eliminate_duplicates=False,
    )
    started = time.perf_counter()
    result = minimize(problem, algorithm, ("n_gen", args.generations + 1), seed=args.seed, copy_algorithm=False)
    return time.perf_counter() - started, result.F


def cold_start(args) -> float:
    """Seconds for imports plus a first run in a fresh interpreter (Numba cache warm)."""
    command = [sys.executable, __file__, "--cold-child", "--tasks", str(args.tasks), "--edges", str(args.edges),
               "--nodes", str(args.nodes), "--population", str(args.population),
               "--generations", str(args.generations), "--seed", str(args.seed)]
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    return json.loads(out.stdout.strip().splitlines()[-1]).get("seconds", wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 tasks, 30 generations, 2 repeats")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock pymoo comparison")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start subprocess")
    parser.add_argument("--cold-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.edges, args.generations, args.repeats = 200, 600, 30, 2

    if args.cold_child:
        started = time.perf_counter()
        timed_run(build(args), args)
        print(json.dumps({"seconds": time.perf_counter() - started}))
        return

    instance = build(args)
    timed_run(instance, args)  # warm-up: Numba caches loaded, baselines compiled
    runs = [timed_run(instance, args) for _ in range(args.repeats)]
    median = statistics.median(r["seconds"] for r in runs)
    pick = min(runs, key=lambda r: abs(r["seconds"] - median))
    record = {
        "benchmark": "optimizer",
        "tasks": args.tasks, "edges": args.edges, "nodes": args.nodes,
        "population": args.population, "generations": args.generations,
        "seconds": median,
        "seconds_runs": [round(r["seconds"], 4) for r in runs],
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "evaluations": pick["evaluations"],
        "evaluations_per_s": pick["evaluations"] / median,
        "evaluator_seconds": pick["evaluator"],
        "baselines_seconds": pick["baselines"],
        "pymoo_seconds": pick["pymoo"],
        "evaluator_share": pick["evaluator"] / pick["seconds"],
        "pymoo_share": pick["pymoo"] / pick["seconds"],
        "front_size": pick["front"],
        "load_average": os.getloadavg()[0],
    }
    if not args.no_cold:
        record["cold_start_seconds"] = cold_start(args)
    if not args.no_stock:
        from core.pareto import DEFAULT_OBJECTIVES, hypervolume, objective_matrix

        from core.algorithms.baselines import baseline_plans

        stock_seconds, stock_F = stock_run(instance, args)
        ours_F = objective_matrix(pick["result"].stats, DEFAULT_OBJECTIVES)
        # Hypervolumes in one box: the baselines' spread (as core.api reports it).
        evaluator = Evaluator(instance)
        base_F = objective_matrix(
            np.vstack([evaluator.stats(p.assignment, p.order) for p in baseline_plans(evaluator).values()]),
            DEFAULT_OBJECTIVES)
        ideal, nadir = base_F.min(axis=0), base_F.max(axis=0)
        record.update({
            "stock_seconds": stock_seconds,
            "speedup_vs_stock": stock_seconds / median,
            "hypervolume": hypervolume(ours_F, ideal, nadir),
            "stock_hypervolume": hypervolume(stock_F, ideal, nadir),
            "baselines_hypervolume": hypervolume(base_F, ideal, nadir),
        })

    rows = [("seconds per run (median)", f"{median:.3f}  runs {record['seconds_runs']}"),
            ("CPU seconds per run (median)", f"{record['cpu_seconds']:.3f}"),
            ("evaluations / s", f"{record['evaluations_per_s']:,.0f}"),
            ("in Evaluator.stats", f"{pick['evaluator']:.3f} s ({record['evaluator_share']:.0%})"),
            ("baseline seeding", f"{pick['baselines']:.3f} s"),
            ("pymoo loop (rest)", f"{pick['pymoo']:.3f} s ({record['pymoo_share']:.0%})"),
            ("front size", str(pick["front"]))]
    if "cold_start_seconds" in record:
        rows.append(("cold start (fresh process)", f"{record['cold_start_seconds']:.3f} s"))
    if "stock_seconds" in record:
        rows.append(("stock pymoo NSGA-II",
                     f"{record['stock_seconds']:.3f} s ({record['speedup_vs_stock']:.1f}x slower)"))
        rows.append(("hypervolume ours / stock / baselines",
                     f"{record['hypervolume']:.3f} / {record['stock_hypervolume']:.3f} / "
                     f"{record['baselines_hypervolume']:.3f}"))
    rows.append(("load average (shared machine)", f"{record['load_average']:.2f}"))
    print(f"NSGA-II, {args.tasks} tasks x {args.edges} edges on {args.nodes} nodes, "
          f"population {args.population} x {args.generations} generations")
    for name, value in rows:
        print(f"  {name:<38} {value}")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
