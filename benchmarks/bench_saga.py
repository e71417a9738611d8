"""Apportion's NSGA-II against SAGA's list-scheduling heuristics on WfCommons workflows.

Issue 10: on WfCommons workflows on heterogeneous networks, the fastest plan on Apportion's
front should be no slower than the best of SAGA's (the ``anrg-saga`` package) list-scheduling
heuristics on every instance, and 5 % faster in geometric mean, with default settings.

Per instance (a WfCommons recipe's workflow on one network shape, fixed seeds): every
non-exhaustive SAGA scheduler runs on the instance converted to SAGA's model; each schedule
becomes an Apportion plan (its assignment, dispatched by start time) scored by Apportion's
evaluator, which must agree with SAGA's makespan (or beat it: appending a start-time order can
only start tasks earlier); plans that break a memory limit are dropped. Then Apportion's
``nsga2`` runs with default settings. Prints a table, the geometric-mean ratio of Apportion's
fastest plan to the best heuristic and the instances above 1, then one JSON line.

    python benchmarks/bench_saga.py [--quick] [--population N] [--generations N] [--seed N]
                                    [--only NAME ...]

SAGA installs without its declared dependencies (``benchmarks/requirements-saga.txt``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core import defaults  # noqa: E402
from apportion.core.algorithms.heft import HeftAllocator  # noqa: E402
from apportion.core.api import Settings, optimize  # noqa: E402
from apportion.core.evaluate import STAT_INDEX, Evaluator, Plan  # noqa: E402
from apportion.core.model import Cluster, Instance, Link, Node, Task, Workload  # noqa: E402
from apportion.core.wfformat import generate_wfcommons  # noqa: E402

# SAGA's schedulers that are not list heuristics of polynomial cost: BruteForce tries every
# assignment and order, SMT calls an SMT solver (both exact and exponential); Hybrid only
# returns the best of the schedulers it is given, which this benchmark does anyway.
EXCLUDED = ("BruteForceScheduler", "SMTScheduler", "HybridScheduler")

# Relative tolerance of the model check (SAGA adds its times in another order).
AGREEMENT_RTOL = 1e-9


def saga_schedulers() -> dict[str, object]:
    """Every SAGA scheduler but the exact ones, by SAGA's short name (``HEFT``, ``MinMin``, ...)."""
    import saga.schedulers as schedulers

    found = {}
    for cls_name in schedulers.__all__:
        if cls_name in EXCLUDED:
            continue
        found[cls_name.removesuffix("Scheduler")] = getattr(schedulers, cls_name)()
    return found


# --- Instances -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    recipe: str
    tasks: int
    shape: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.recipe}-{self.tasks}-{self.shape}"


# Several recipes, 50 to 1,000 tasks, each on one of the network shapes below; seeds fixed.
CASES = (
    Case("montage", 100, "random", 1),
    Case("montage", 300, "star", 2),
    Case("epigenomics", 200, "two-clusters", 3),
    Case("epigenomics", 400, "random", 4),
    Case("cycles", 300, "star", 5),
    Case("bwa", 500, "two-clusters", 6),
    Case("soykb", 200, "random", 7),
    Case("srasearch", 100, "star", 8),
    Case("blast", 300, "two-clusters", 9),
    Case("seismology", 200, "random", 10),
    Case("1000genome", 500, "star", 11),
    Case("montage", 1000, "two-clusters", 12),
    Case("cycles", 70, "random", 13),
    Case("1000genome", 150, "two-clusters", 14),
)
QUICK_CASES = (
    Case("montage", 60, "random", 1),
    Case("epigenomics", 60, "star", 2),
    Case("cycles", 70, "two-clusters", 3),
)

# Communication-to-computation ratio of the fast links: the mean edge's transfer over a fast
# link takes this fraction of the mean task's runtime on a node of mean speed.
CCR = 0.5
SLOW_LINK = 10.0  # how many times slower an uplink or the link between two clusters is
# Memory (GB): each task kind needs one of these, drawn per kind; edge boxes hold 8 GB, the
# other nodes 64 GB. SAGA's model has no memory, so a limit that binds drops nearly every
# SAGA plan (with 16 GB kinds kept off the edge boxes, 8 of the first 9 heuristics broke it on
# montage-300-star): the needs stay within every node's memory, and the check stays.
KIND_MEMORY = (0.5, 1.0, 2.0, 4.0, 8.0)
EDGE_MEMORY, SERVER_MEMORY = 8.0, 64.0


def with_memory(workload: Workload, seed: int) -> Workload:
    """The workload with a memory need per task kind (WfCommons 1.6 recipes record none)."""
    rng = np.random.default_rng([seed, 1])
    kinds = sorted({t.kind for t in workload.tasks})
    need = dict(zip(kinds, rng.choice(KIND_MEMORY, size=len(kinds), p=(0.3, 0.3, 0.2, 0.1, 0.1)).tolist(),
                    strict=True))
    tasks = tuple(Task(t.id, t.work, kind=t.kind, memory=need[t.kind], request=t.request) for t in workload.tasks)
    return Workload(tasks, workload.edges, workload.requests, workload.name)


def fast_bandwidth(workload: Workload, mean_speed: float) -> float:
    """MB/s of the fast links so that the mean transfer is ``CCR`` x the mean runtime."""
    data = np.array([e.data for e in workload.edges]) if workload.edges else np.zeros(1)
    runtime = float(np.mean([t.work for t in workload.tasks])) / mean_speed
    return float(data.mean() / (CCR * runtime)) if data.mean() > 0 else 1000.0


def network(shape: str, workload: Workload, seed: int) -> Cluster:
    """A heterogeneous network of one shape, every pair of nodes linked (latency 0: SAGA's
    model has none).

    * ``random``: 8 nodes of random speeds (1-10x), every link the same bandwidth;
    * ``star``: 4 cloud servers (fast) and 8 edge boxes (slow, 8 GB); the boxes reach the
      servers and each other over uplinks ``SLOW_LINK`` times slower than the cloud's links;
    * ``two-clusters``: two clusters of 5 nodes (one fast, one slow), fast links inside each,
      one link ``SLOW_LINK`` times slower between them.
    """
    rng = np.random.default_rng([seed, 2])
    if shape == "random":
        speeds = rng.uniform(5.0, 50.0, size=8)
        zones = ["all"] * 8
        edge = [False] * 8
    elif shape == "star":
        speeds = np.concatenate([rng.uniform(30.0, 60.0, size=4), rng.uniform(3.0, 10.0, size=8)])
        zones = ["cloud"] * 4 + ["edge"] * 8
        edge = [False] * 4 + [True] * 8
    elif shape == "two-clusters":
        speeds = np.concatenate([rng.uniform(20.0, 50.0, size=5), rng.uniform(5.0, 15.0, size=5)])
        zones = ["a"] * 5 + ["b"] * 5
        edge = [False] * 10
    else:
        raise ValueError(f"unknown network shape {shape!r}")
    nodes = tuple(Node(f"n{j}", "edge" if edge[j] else "server", float(speeds[j]),
                       EDGE_MEMORY if edge[j] else SERVER_MEMORY, zone=zones[j]) for j in range(len(speeds)))
    fast = fast_bandwidth(workload, float(speeds.mean()))
    slow = fast / SLOW_LINK
    links = {"random": [Link("all", "all", fast)],
             "star": [Link("cloud", "cloud", fast), Link("cloud", "edge", slow), Link("edge", "edge", slow)],
             "two-clusters": [Link("a", "a", fast), Link("b", "b", fast), Link("a", "b", slow)]}[shape]
    return Cluster(nodes=nodes, links=tuple(links), name=shape)


def build_case(case: Case) -> Instance:
    workload = with_memory(generate_wfcommons(case.recipe, case.tasks, case.seed), case.seed)
    return Instance.build(workload, network(case.shape, workload, case.seed))


# --- SAGA's model ----------------------------------------------------------------------------

def to_saga(instance: Instance):
    """(network, task graph) in SAGA's model: node speed = GFLOP/s, link speed = MB/s (the
    same node: infinite), task cost = GFLOP, dependency size = MB; so SAGA's runtime cost /
    speed and transfer size / speed are Apportion's (which has no latency here)."""
    from saga import Network, TaskGraph

    inst = instance
    if np.any(inst.latency[~np.eye(inst.n_nodes, dtype=bool)] != 0):
        raise ValueError("SAGA's model has no link latency")
    if np.any(inst.rate != inst.rate[:, :1]):
        raise ValueError("SAGA's model has one speed per node (no speed factors)")
    speeds = inst.rate[:, 0]
    nodes = [(name, float(speeds[j])) for j, name in enumerate(inst.node_ids)]
    links = []
    for a in range(inst.n_nodes):
        for b in range(a, inst.n_nodes):
            bandwidth = math.inf if a == b else 1.0 / inst.inv_bandwidth[a, b]
            links.append((inst.node_ids[a], inst.node_ids[b], float(bandwidth)))
    tasks = [(name, float(inst.work[t])) for t, name in enumerate(inst.task_ids)]
    deps = [(inst.task_ids[p], inst.task_ids[t], float(inst.parent_data[e]))
            for t in range(inst.n_tasks) for e in range(inst.parent_ptr[t], inst.parent_ptr[t + 1])
            for p in (inst.parent_idx[e],)]
    return Network.create(nodes=nodes, edges=links), TaskGraph.create(tasks=tasks, dependencies=deps)


@dataclass
class HeuristicRun:
    name: str
    status: str  # "ok", "memory" (breaks a memory limit), "incomplete" (tasks missing), "timeout", "error"
    saga_makespan: float
    makespan: float  # Apportion's evaluator on the converted plan; inf unless status is "ok"
    seconds: float
    error: str = ""

    @property
    def agrees(self) -> bool:
        """Apportion's makespan of the plan is SAGA's, or below (append-decoding a start-time
        order only starts tasks earlier)."""
        return self.makespan <= self.saga_makespan * (1 + AGREEMENT_RTOL)


def _schedule_in_child(scheduler, net, graph, conn) -> None:
    logging.disable(logging.WARNING)  # SAGA warns of the source and sink it adds
    try:
        schedule = scheduler.schedule(net, graph)
        conn.send([(task.name, node, task.start, task.end) for node, placed in schedule.items() for task in placed])
    except Exception as e:  # a scheduler's own bug: reported in the table, not fatal
        conn.send(f"{type(e).__name__}: {e}")
    conn.close()


def timed_schedule(scheduler, net, graph, timeout: float):
    """SAGA's schedule as (task, node, start, end) rows, computed in a forked child so that a
    scheduler running past ``timeout`` seconds can be stopped (None then); the error message
    when the scheduler raised."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_schedule_in_child, args=(scheduler, net, graph, send), daemon=True)
    child.start()
    send.close()
    rows = receive.recv() if receive.poll(timeout) else None
    child.join(1.0)
    if child.is_alive():
        child.kill()
        child.join()
    return rows


def from_saga(instance: Instance, rows) -> tuple[Plan | None, float]:
    """SAGA's schedule as an Apportion plan (its nodes; tasks dispatched by start time, then
    end time, then topological position) and SAGA's makespan of the instance's own tasks (the
    zero-cost source and sink SAGA adds to a graph with several are left out); the plan is
    None when SAGA left tasks out."""
    index = {name: t for t, name in enumerate(instance.task_ids)}
    node = {name: j for j, name in enumerate(instance.node_ids)}
    n = instance.n_tasks
    assign = np.full(n, -1, dtype=np.int32)
    start, end = np.full(n, np.nan), np.full(n, np.nan)
    for name, node_name, task_start, task_end in rows:
        t = index.get(name)
        if t is not None:
            assign[t], start[t], end[t] = node[node_name], task_start, task_end
    if (assign < 0).any():
        return None, float(np.nanmax(end))
    position = np.empty(n, dtype=np.int64)
    position[instance.topo_order] = np.arange(n)
    order = np.lexsort((position, end, start)).astype(np.int32)
    return Plan(assign, order), float(end.max())


def run_heuristic(name: str, scheduler, instance: Instance, evaluator: Evaluator, net, graph,
                  timeout: float) -> HeuristicRun:
    began = time.perf_counter()
    rows = timed_schedule(scheduler, net, graph, timeout)
    seconds = time.perf_counter() - began
    if rows is None:
        return HeuristicRun(name, "timeout", math.inf, math.inf, seconds)
    if isinstance(rows, str):
        return HeuristicRun(name, "error", math.inf, math.inf, seconds, rows)
    plan, saga_makespan = from_saga(instance, rows)
    if plan is None:
        return HeuristicRun(name, "incomplete", saga_makespan, math.inf, seconds)
    if not instance.eligible[np.arange(instance.n_tasks), plan.assignment].all():
        return HeuristicRun(name, "memory", saga_makespan, math.inf, seconds)
    makespan = float(evaluator.stats(plan.assignment, plan.order)[0, STAT_INDEX["makespan"]])
    return HeuristicRun(name, "ok", saga_makespan, makespan, seconds)


def run_heuristics(instance: Instance, evaluator: Evaluator, timeout: float) -> list[HeuristicRun]:
    net, graph = to_saga(instance)
    return [run_heuristic(name, scheduler, instance, evaluator, net, graph, timeout)
            for name, scheduler in saga_schedulers().items()]


def cached_heuristics(case_name: str, instance: Instance, evaluator: Evaluator, timeout: float,
                      cache: str | None) -> list[HeuristicRun]:
    """SAGA's runs on one instance, read from the JSON file ``cache`` when it holds them (the
    instances are built from fixed seeds and SAGA's schedules are deterministic under
    ``PYTHONHASHSEED=0``), else computed and added to it. Only SAGA's side is cached:
    Apportion's search always runs."""
    stored = {}
    if cache and os.path.exists(cache):
        with open(cache) as f:
            stored = json.load(f)
    key = f"{case_name}/{instance.n_tasks}/{instance.n_edges}/{instance.n_nodes}"
    if key in stored:
        return [HeuristicRun(r["name"], r["status"], _infinite(r["saga_makespan"]), _infinite(r["makespan"]),
                             r["seconds"], r.get("error", "")) for r in stored[key]]
    runs = run_heuristics(instance, evaluator, timeout)
    if cache:
        stored[key] = [{"name": r.name, "status": r.status, "saga_makespan": _finite(r.saga_makespan),
                        "makespan": _finite(r.makespan), "seconds": r.seconds, "error": r.error} for r in runs]
        with open(cache, "w") as f:
            json.dump(stored, f, indent=1)
    return runs


def _infinite(x: float | None) -> float:
    return math.inf if x is None else float(x)


# --- Apportion and the report ----------------------------------------------------------------

@dataclass
class Outcome:
    case: Case
    instance: Instance
    heuristics: list[HeuristicRun]
    apportion_makespan: float
    heft_makespan: float
    search_seconds: float
    search_cpu_seconds: float

    @property
    def best(self) -> HeuristicRun:
        return min(self.heuristics, key=lambda run: (run.makespan, run.name))

    @property
    def ratio(self) -> float:
        return self.apportion_makespan / self.best.makespan

    @property
    def heft_ratio(self) -> float:
        return self.heft_makespan / self.best.makespan

    def record(self) -> dict:
        return {
            "instance": self.case.name, "recipe": self.case.recipe, "tasks": self.instance.n_tasks,
            "edges": self.instance.n_edges, "nodes": self.instance.n_nodes, "shape": self.case.shape,
            "seed": self.case.seed, "best_heuristic": self.best.name, "best_makespan": self.best.makespan,
            "apportion_makespan": self.apportion_makespan, "ratio": self.ratio,
            "apportion_heft_makespan": self.heft_makespan, "apportion_heft_ratio": self.heft_ratio,
            "search_seconds": self.search_seconds, "search_cpu_seconds": self.search_cpu_seconds,
            "heuristics": {run.name: {"status": run.status, "saga_makespan": _finite(run.saga_makespan),
                                      "makespan": _finite(run.makespan), "agrees": run.agrees,
                                      "seconds": round(run.seconds, 3), **({"error": run.error} if run.error else {})}
                           for run in self.heuristics},
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_case(case: Case, settings: Settings, timeout: float, cache: str | None = None) -> Outcome:
    instance = build_case(case)
    evaluator = Evaluator(instance)
    heuristics = cached_heuristics(case.name, instance, evaluator, timeout, cache)
    heft = HeftAllocator().build(instance)
    heft_makespan = float(evaluator.stats(heft.assignment, heft.order)[0, STAT_INDEX["makespan"]])
    cpu = time.process_time()
    result = optimize(instance, settings)
    cpu = time.process_time() - cpu
    fastest = float(result.front_stats[:, STAT_INDEX["makespan"]].min())
    return Outcome(case, instance, heuristics, fastest, heft_makespan, result.seconds, cpu)


def print_outcome(outcome: Outcome) -> None:
    best = outcome.best
    print(f"{outcome.case.name:28s}{outcome.instance.n_tasks:6d} {outcome.case.shape:13s}{best.name:12s}"
          f"{best.makespan:12.1f}{outcome.apportion_makespan:12.1f}{outcome.ratio:8.3f}{outcome.heft_ratio:8.3f}"
          f"{outcome.search_seconds:9.1f}{outcome.search_cpu_seconds:8.1f}", flush=True)
    for run in outcome.heuristics:
        if run.status != "ok" or not run.agrees:
            note = run.error or ("Apportion above SAGA: models disagree" if run.status == "ok" else "")
            print(f"    {run.name:12s} {run.status:10s} SAGA {run.saga_makespan:12.1f} Apportion {run.makespan:12.1f}"
                  f" {run.seconds:7.1f}s {note[:70]}", flush=True)


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 small instances, population 20 x 10 generations")
    parser.add_argument("--population", type=int, default=None, help=f"default {defaults.POPULATION} (quick: 20)")
    parser.add_argument("--generations", type=int, default=None, help=f"default {defaults.GENERATIONS} (quick: 10)")
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one SAGA scheduler may take on one instance (default 60)")
    parser.add_argument("--heuristics-cache", metavar="FILE",
                        help="JSON file of SAGA's runs per instance: read when it holds an instance, else written "
                             "(re-runs then time only Apportion's search)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these instances (e.g. montage-100-random)")
    args = parser.parse_args()
    _fix_hash_seed()
    logging.disable(logging.WARNING)  # SAGA warns of the source and sink it adds
    cases = QUICK_CASES if args.quick else CASES
    if args.only:
        cases = tuple(c for c in cases if c.name in args.only)
    settings = Settings(population=args.population or (20 if args.quick else defaults.POPULATION),
                        generations=args.generations or (10 if args.quick else defaults.GENERATIONS), seed=args.seed)
    print(f"SAGA heuristics: {', '.join(saga_schedulers())} (excluded: {', '.join(EXCLUDED)}); "
          f"Apportion nsga2 {settings.population} x {settings.generations}, seed {settings.seed}")
    print(f"{'instance':28s}{'tasks':>6s} {'shape':13s}{'best':12s}{'makespan':>12s}{'apportion':>12s}"
          f"{'ratio':>8s}{'heft':>8s}{'search s':>9s}{'cpu s':>8s}")
    outcomes = []
    for case in cases:
        outcome = run_case(case, settings, args.timeout, args.heuristics_cache)
        print_outcome(outcome)
        outcomes.append(outcome)
    ratios = [o.ratio for o in outcomes]
    disagreements = [(o.case.name, r.name) for o in outcomes for r in o.heuristics if r.status == "ok" and not r.agrees]
    summary = {"geometric_mean_ratio": geometric_mean(ratios), "instances_above_1": sum(r > 1 for r in ratios),
               "worst_ratio": max(ratios), "heft_geometric_mean_ratio": geometric_mean([o.heft_ratio for o in outcomes]),
               "model_disagreements": disagreements}
    print(f"geometric-mean ratio {summary['geometric_mean_ratio']:.4f} (target <= 0.95); instances above 1: "
          f"{summary['instances_above_1']} of {len(outcomes)} (target 0); worst {summary['worst_ratio']:.4f}; "
          f"model disagreements: {len(disagreements)}")
    print(json.dumps({"benchmark": "saga", "population": settings.population, "generations": settings.generations,
                      "seed": settings.seed, "heuristics": list(saga_schedulers()), "excluded": list(EXCLUDED),
                      "instances": [o.record() for o in outcomes], "summary": summary}))


def _fix_hash_seed() -> None:
    """Run with ``PYTHONHASHSEED=0``: SAGA iterates over sets of task names, so its ties (and
    then its schedules) depend on string hashing, which Python salts per process."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])


if __name__ == "__main__":
    main()
