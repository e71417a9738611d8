"""NSGA-II optimiser speed: the reference workload (1000 tasks, 3000 edges, 8 nodes),
population 100 x 200 generations.

Prints a table and one JSON line: seconds per run (median wall and median CPU seconds of
this process, as the machine may be shared), evaluations/s, where the median run's time goes
(``CATEGORIES``: plan evaluation, baseline seeding, each part of our own NSGA-II code, and
pymoo itself; exclusive wall and CPU seconds, measured by wrapping the calls between them,
which adds about 2.5% to a run), the cold start, and the ratio to a lean stock pymoo NSGA-II (IntegerRandomSampling +
SBX + PM with RoundingRepair, plus an eligibility repair that also puts every plan in HEFT's
order, pymoo's RankAndCrowding and
tournament, no duplicate elimination: pymoo's default pairwise one would add its O(P^2 n)
distance matrices) on the same problem in the same process.

Cold start: a fresh ``python -c`` process (Numba cache warm: this process compiled and ran
everything first) that imports the optimiser, builds the reference instance and runs
NSGA-II once, then once more. Reported: interpreter start + imports, the instance build,
Numba's one-time target set-up (done by the first kernel call anyway; timed apart here: it
imports Numba's registries and, for BLAS, scipy.linalg), the first run, the second (warm) run,
``cold_start_seconds`` = process start to the end of the first run (all of the above; and
``cold_start_cpu_seconds``, the CPU time of that process's main thread until then, less
sensitive to a busy machine; the process CPU time would add idle-spinning BLAS threads), and
``cold_overhead_seconds`` = first run - warm run (loading the cached kernels, first calls).

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

from apportion.core.evaluate import Evaluator
from apportion.core.model import Instance
from apportion.core.synthetic import random_cluster, random_workload


class Ledger:
    """Exclusive wall and CPU seconds per category: a wrapped call's time counts to its
    category minus the time of wrapped calls nested in it, so the categories add up to the
    run. Time outside every wrapped call counts to ``base``."""

    def __init__(self, base: str):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack = [base]
        self._mark = (time.perf_counter(), time.process_time())

    def _charge(self) -> None:
        now = (time.perf_counter(), time.process_time())
        category = self._stack[-1]
        self.wall[category] = self.wall.get(category, 0.0) + now[0] - self._mark[0]
        self.cpu[category] = self.cpu.get(category, 0.0) + now[1] - self._mark[1]
        self._mark = now

    def wrap(self, category: str, func):
        def timed(*args, **kwargs):
            self._charge()
            self._stack.append(category)
            try:
                return func(*args, **kwargs)
            finally:
                self._charge()
                self._stack.pop()

        return timed

    def close(self) -> None:
        self._charge()


# Where the run's time goes: (category, what it covers). ``pymoo`` is pymoo's own code (its
# algorithm loop, Problem.evaluate, Population handling, termination) together with our thin
# overrides of its loop methods (ArrayNSGA2.next/_advance/..., which only pass arrays on).
CATEGORIES = (
    ("evaluator", "Evaluator.stats (plan evaluation)"),
    ("baselines", "baseline seeding"),
    ("variation", "ours: sampling, tournament, crossover, mutation, duplicate removal"),
    ("local_search", "ours: memetic step (insertion decoding, critical-path moves)"),
    ("survival", "ours: non-dominated sort + crowding (survival choice)"),
    ("archive", "ours: Pareto archive + hypervolume history"),
    ("interface", "ours: evaluation glue, Individuals (initial and final populations)"),
    ("setup", "ours: allocate() set-up and result decoding"),
    ("pymoo", "pymoo itself"),
)


def _patches(nsga, evaluator) -> list[tuple[object, str, str]]:
    """(owner, attribute, category) of every call the ledger wraps."""
    from apportion.core.algorithms import local_search, pymoo_adapters, variation

    return [
        (evaluator, "stats", "evaluator"),
        (nsga, "baseline_plans", "baselines"),
        (nsga, "minimize", "pymoo"),
        (pymoo_adapters.Problem, "evaluate", "pymoo"),  # called by ArrayEvaluator.evaluate
        (variation.PlanSampling, "_do", "variation"),
        (variation.ArrayMating, "children", "variation"),
        (local_search.MemeticStep, "propose", "local_search"),
        (pymoo_adapters.RankAndCrowdingSurvival, "choose", "survival"),
        (nsga.ParetoArchive, "add", "archive"),
        (pymoo_adapters.HistoryCallback, "notify", "archive"),
        (pymoo_adapters.ArrayEvaluator, "evaluate", "interface"),
        (pymoo_adapters.ArrayEvaluator, "eval", "interface"),
        (pymoo_adapters.ArrayEvaluator, "individuals", "interface"),
        (pymoo_adapters.PlanProblem, "_evaluate", "interface"),
    ]


def build(args) -> Instance:
    return Instance.build(random_workload(args.tasks, args.edges, seed=args.seed),
                          random_cluster(args.nodes, seed=args.seed))


def timed_run(instance: Instance, args) -> dict:
    """One NSGA-II run on a fresh evaluator, with its time split by category (``CATEGORIES``)."""
    import inspect

    import apportion.core.algorithms.nsga as nsga

    evaluator = Evaluator(instance)
    allocator = nsga.NSGA2Allocator(population=args.population, generations=args.generations)
    started, cpu_started = time.perf_counter(), time.process_time()
    ledger = Ledger("setup")
    saved = []
    for owner, name, category in _patches(nsga, evaluator):
        # The evaluator's bound method; static lookup elsewhere keeps staticmethods static.
        original = getattr(owner, name) if owner is evaluator else inspect.getattr_static(owner, name)
        kind = type(original) if isinstance(original, (staticmethod, classmethod)) else None
        wrapped = ledger.wrap(category, original.__func__ if kind else original)
        saved.append((owner, name, original))
        setattr(owner, name, kind(wrapped) if kind else wrapped)
    try:
        result = allocator.allocate(evaluator, seed=args.seed)
    finally:
        for owner, name, original in reversed(saved):
            if owner is evaluator:
                del owner.stats
            else:
                setattr(owner, name, original)
        ledger.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": seconds, "cpu_seconds": cpu, "wall": ledger.wall, "cpu": ledger.cpu,
            "evaluations": result.evaluations, "front": len(result.plans), "result": result}


def stock_run(instance: Instance, args) -> tuple[float, np.ndarray]:
    """pymoo's stock integer NSGA-II (lean: no duplicate elimination) on the same problem;
    returns (seconds, final F)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    from apportion.core.algorithms.heft import heft_priority
    from apportion.core.algorithms.nsga import ParetoArchive, order_pool
    from apportion.core.algorithms.pymoo_adapters import PlanProblem
    from apportion.core.algorithms.variation import EligibilityRepair, PlanCodec
    from apportion.core.pareto import DEFAULT_OBJECTIVES

    class HeftOrderRepair(EligibilityRepair):
        """Nodes only, as before orders were searched: every plan in HEFT's order (stock
        operators would give each plan an order of its own, which the evaluator lays out
        one by one)."""

        def fix(self, X):
            X = np.rint(np.asarray(X, dtype=np.float64)).astype(np.int32).reshape(-1, self.codec.n_genes)
            X[:, self.codec.n_tasks:] = heft_priority(instance)
            return super().fix(X)

    evaluator = Evaluator(instance)
    codec = PlanCodec(instance, order_pool(instance))
    problem = PlanProblem(evaluator, codec, DEFAULT_OBJECTIVES, ParetoArchive())
    algorithm = NSGA2(
        pop_size=args.population, sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        repair=HeftOrderRepair(codec), eliminate_duplicates=False,
    )
    started = time.perf_counter()
    result = minimize(problem, algorithm, ("n_gen", args.generations + 1), seed=args.seed, copy_algorithm=False)
    return time.perf_counter() - started, result.F


COLD_CHILD = """
import json, time
process_started = time.time()
started = time.perf_counter()
from apportion.core.algorithms.nsga import NSGA2Allocator
from apportion.core.evaluate import Evaluator
from apportion.core.model import Instance
from apportion.core.synthetic import random_cluster, random_workload
imported = time.perf_counter()
instance = Instance.build(random_workload({tasks}, {edges}, seed={seed}), random_cluster({nodes}, seed={seed}))
built = time.perf_counter()
from numba.core.registry import cpu_target
cpu_target.target_context.refresh()
numba_ready = time.perf_counter()
allocator = NSGA2Allocator(population={population}, generations={generations})
allocator.allocate(Evaluator(instance), seed={seed})
first, first_done, first_cpu = time.perf_counter(), time.time(), time.thread_time()
allocator.allocate(Evaluator(instance), seed={seed})
second = time.perf_counter()
print(json.dumps(dict(imports=imported - started, build=built - imported, numba=numba_ready - built,
                      first=first - numba_ready,
                      warm=second - first, process_started=process_started, first_done=first_done,
                      first_cpu=first_cpu)))
"""


def cold_start(args) -> dict:
    """The cold-start parts (see the module docstring), from a fresh interpreter."""
    code = COLD_CHILD.format(tasks=args.tasks, edges=args.edges, nodes=args.nodes, seed=args.seed,
                             population=args.population, generations=args.generations)
    spawned = time.time()  # wall clock: comparable with the child's
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = json.loads(out.stdout.strip().splitlines()[-1])
    total = child["first_done"] - spawned
    return {
        "cold_start_seconds": total,
        "cold_start_cpu_seconds": child["first_cpu"],
        "cold_interpreter_seconds": child["process_started"] - spawned,
        "cold_imports_seconds": child["imports"],
        "cold_build_seconds": child["build"],
        "cold_numba_setup_seconds": child["numba"],
        "cold_first_run_seconds": child["first"],
        "cold_warm_run_seconds": child["warm"],
        "cold_overhead_seconds": child["first"] - child["warm"],
    }


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
    parser.add_argument("--cold-repeats", type=int, default=3, help="fresh processes for the cold start")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.edges, args.generations, args.repeats = 200, 600, 30, 2

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
        "front_size": pick["front"],
        "load_average": os.getloadavg()[0],
    }
    ours = [c for c, _ in CATEGORIES if c not in ("evaluator", "baselines", "pymoo")]
    for category, _ in CATEGORIES:
        wall, cpu = pick["wall"].get(category, 0.0), pick["cpu"].get(category, 0.0)
        record.update({f"{category}_seconds": wall, f"{category}_share": wall / pick["seconds"],
                       f"{category}_cpu_seconds": cpu, f"{category}_cpu_share": cpu / pick["cpu_seconds"]})
    record["ours_seconds"] = sum(record[f"{c}_seconds"] for c in ours)
    record["ours_share"] = record["ours_seconds"] / pick["seconds"]
    if not args.no_cold:
        colds = [cold_start(args) for _ in range(args.cold_repeats)]
        record.update({key: statistics.median(c[key] for c in colds) for key in colds[0]})
        record["cold_start_runs"] = [round(c["cold_start_seconds"], 3) for c in colds]
    if not args.no_stock:
        from apportion.core.algorithms.baselines import baseline_plans
        from apportion.core.pareto import DEFAULT_OBJECTIVES, hypervolume, objective_matrix

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
            ("time by category, wall / CPU", "")]
    rows += [(f"  {category}", f"{record[f'{category}_seconds']:.3f} s ({record[f'{category}_share']:.0%}) / "
                              f"{record[f'{category}_cpu_seconds']:.3f} s ({record[f'{category}_cpu_share']:.0%})  "
                              f"{what}") for category, what in CATEGORIES]
    rows += [("  ours (variation to setup)", f"{record['ours_seconds']:.3f} s ({record['ours_share']:.0%})"),
            ("front size", str(pick["front"]))]
    if "cold_start_seconds" in record:
        rows += [("cold start: process start to first result", f"{record['cold_start_seconds']:.3f} s  "
                                                              f"runs {record['cold_start_runs']}"),
                 ("  main-thread CPU seconds until then", f"{record['cold_start_cpu_seconds']:.3f} s"),
                 ("  interpreter start / imports", f"{record['cold_interpreter_seconds']:.3f} s / "
                                                   f"{record['cold_imports_seconds']:.3f} s"),
                 ("  instance build / Numba set-up", f"{record['cold_build_seconds']:.3f} s / "
                                                     f"{record['cold_numba_setup_seconds']:.3f} s"),
                 ("  first run / warm run in that process", f"{record['cold_first_run_seconds']:.3f} s / "
                                                           f"{record['cold_warm_run_seconds']:.3f} s"),
                 ("  first-run overhead (first - warm)", f"{record['cold_overhead_seconds']:.3f} s")]
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
