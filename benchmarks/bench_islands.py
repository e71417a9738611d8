"""Island-model NSGA-II (issue 11): merged-front quality at equal evaluations, and wall time
with 1, 2 and 4 worker processes.

Quality, per instance (the three workflow scenarios, fixed seeds), on (makespan, utilization,
imbalance), all in one process and deterministic:

* ``one island``: NSGA-II, population P x G generations;
* ``K seeds``: K islands differing by seed only, each P x g with K (g + 1) = G + 1 populations
  scored (``core.islands.island_budget``: every island scores its own initial population);
* ``K islands``: the same with objective emphasis (islands 1..K-1 each leave one objective out);
* ``K x R rounds``: R rounds of K emphasis islands, K R (g + 1) = G + 1, later rounds seeded
  with the merged front (migration);
* ``wide``: K emphasis islands of P x G each: K times the evaluations, but on K workers the
  wall time of one search (what the islands buy when there are workers to spare).

Hypervolume in the instance's fixed reference box (``core.reference_box``: ideal from lower
bounds, nadir from the baselines' plans), reference point 1.1. ``evaluations`` counts every plan scored; each island also scores the
baselines' plans (and, after round 1, the migrants), so the islands spend a little more than
one search: the table shows the ratio.

Wall time: the K wide islands (P x G each) on a larger instance (``TIMING_INSTANCE``), each in its
own worker process (a fresh interpreter, as an Airflow worker runs a task: imports, instance
build from the scenario, Numba cache load, the search), with 1, 2 and 4 of them running at a
time, ``--repeats`` times in turn (1, 2, 4, 1, 2, 4, ...; the median is reported, the others
developers' load on the machine varies). ``speedup`` is against 1 worker in this run.
Processes are used here, in the benchmark, never inside an Airflow task.

    python benchmarks/bench_islands.py            # 3 instances, P 40 x G 119, K 4, R 2
    python benchmarks/bench_islands.py --quick    # 1 small instance, P 16 x G 23
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

OBJECTIVES = ("makespan", "utilization", "imbalance")
INSTANCES = (("medical_diagnosis", 12, 12), ("traffic_prediction", 6, 12), ("multimodal_speech", 10, 12))
QUICK_INSTANCES = (("medical_diagnosis", 4, 8),)
TIMING_INSTANCE = ("medical_diagnosis", 40, 16)
WORKER_COUNTS = (1, 2, 4)


def _instance(scenario: str, size: int, nodes: int):
    from apportion.core.model import Instance
    from apportion.core.scenarios import build

    return Instance.build(*build(scenario, size=size, nodes=nodes, seed=0))


# name, K, R, objective emphasis, equal evaluations (else every island gets the one search's
# generations: K times the evaluations, the same wall time on K workers); None takes --islands, --rounds.
VARIANTS = (("one", 1, 1, False, True), ("seeds", None, 1, False, True), ("islands", None, 1, True, True),
            ("rounds", None, None, True, True), ("wide", None, 1, True, False))


def quality(scenario, size, nodes, *, population, generations, islands, rounds, seed) -> dict:
    """Hypervolume, front size and evaluations of each of ``VARIANTS``."""
    from apportion.core.api import Settings
    from apportion.core.islands import island_budget, reference_box, search_islands
    from apportion.core.pareto import hypervolume, objective_matrix

    instance = _instance(scenario, size, nodes)
    box = reference_box(instance, OBJECTIVES)
    base = Settings(population=population, generations=generations, seed=seed, objectives=OBJECTIVES)
    row = {"instance": f"{scenario}/{size}x{nodes}", "tasks": instance.n_tasks}
    for label, k, r, emphasis, equal in VARIANTS:
        k, r = k or islands, r or rounds
        settings = replace(base, generations=island_budget(generations, k, r) if equal else generations)
        started = time.perf_counter()
        run = search_islands(instance, settings, k, r, emphasis=emphasis)
        row[label] = {"islands": k, "rounds": r, "generations": settings.generations,
                      "hypervolume": hypervolume(objective_matrix(run.stats, OBJECTIVES), *box),
                      "pareto_size": len(run.plans), "evaluations": run.evaluations,
                      "seconds": time.perf_counter() - started}
    one = row["one"]["hypervolume"]
    for label, *_ in VARIANTS[1:]:
        row[label]["hypervolume_ratio"] = row[label]["hypervolume"] / one if one else None
        row[label]["evaluations_ratio"] = row[label]["evaluations"] / row["one"]["evaluations"]
    return row


def worker(job: dict) -> None:
    """One island in this process (``--worker JSON``): print its seconds as one JSON line."""
    from apportion.core.api import Settings
    from apportion.core.islands import IslandConfig, run_island

    started = time.perf_counter()
    instance = _instance(*job["instance"])
    config = IslandConfig(**{**job["config"], "objectives": tuple(job["config"]["objectives"])})
    result = run_island(instance, Settings(population=job["population"], generations=job["generations"],
                                           objectives=OBJECTIVES), config)
    print(json.dumps({"island": config.island, "search_seconds": result.seconds,
                      "process_seconds": time.perf_counter() - started, "pareto_size": len(result.front)}))


def wall_time(instance, *, population, generations, islands, seed, workers) -> dict:
    """Run the K islands of one round as worker processes, ``workers`` at a time."""
    from apportion.core.islands import island_configs

    jobs = [{"instance": list(instance), "population": population, "generations": generations,
             "config": config.as_dict()} for config in island_configs(seed, islands, OBJECTIVES)]
    env = {**os.environ, "NUMBA_THREADING_LAYER": os.environ.get("NUMBA_THREADING_LAYER", "workqueue")}
    started, cpu_before = time.perf_counter(), os.times()
    waiting, running, done = list(jobs), [], []
    while waiting or running:
        while waiting and len(running) < workers:
            running.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(waiting.pop(0))],
                                            stdout=subprocess.PIPE, text=True, env=env))
        finished = running.pop(0)
        out, _ = finished.communicate()
        if finished.returncode:
            raise RuntimeError(f"island worker failed with status {finished.returncode}")
        done.append(json.loads(out.strip().splitlines()[-1]))
    cpu_after = os.times()
    return {"workers": workers, "seconds": time.perf_counter() - started,
            "children_cpu_seconds": (cpu_after.children_user + cpu_after.children_system)
            - (cpu_before.children_user + cpu_before.children_system),
            "island_search_seconds": sum(d["search_seconds"] for d in done),
            "island_process_seconds": sum(d["process_seconds"] for d in done)}


def median_timings(instance, *, repeats, **kwargs) -> list[dict]:
    """``wall_time`` for each worker count, ``repeats`` times in turn; per count the run of
    median wall time, with every wall time seen."""
    seen = {w: [] for w in WORKER_COUNTS}
    for _ in range(repeats):
        for w in WORKER_COUNTS:
            seen[w].append(wall_time(instance, workers=w, **kwargs))
    timings = []
    for runs in seen.values():
        runs.sort(key=lambda t: t["seconds"])
        timings.append({**runs[len(runs) // 2], "all_seconds": sorted(t["seconds"] for t in runs)})
    for t in timings:
        t["speedup"] = timings[0]["seconds"] / t["seconds"]
    return timings


def print_quality(rows, *, population, generations, islands, rounds) -> None:
    print(f"One search P {population} x G {generations}; at equal evaluations {islands} islands x "
          f"{rows[0]['islands']['generations']} generations (seeds: no emphasis), {islands} islands x {rounds} "
          f"rounds x {rows[0]['rounds']['generations']} generations; wide: {islands} islands x {generations}")
    print(f"{'instance':<26}{'tasks':>6}{'HV one':>8}" + "".join(f"{'HV ' + v:>11}{'/one':>7}{'evals':>7}"
                                                         for v, *_ in VARIANTS[1:]))
    for row in rows:
        print(f"{row['instance']:<26}{row['tasks']:>6}{row['one']['hypervolume']:>8.4f}" + "".join(
            f"{row[v]['hypervolume']:>11.4f}{row[v]['hypervolume_ratio'] or 0:>7.3f}{row[v]['evaluations_ratio']:>7.2f}"
            for v, *_ in VARIANTS[1:]))
    print("(/one: hypervolume against one search; evals: evaluations against one search)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small instance, small budget")
    parser.add_argument("--population", type=int)
    parser.add_argument("--generations", type=int, help="total generations of the one-island search")
    parser.add_argument("--islands", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, help="wall-time runs per worker count (default 3, quick 1)")
    parser.add_argument("--no-timing", action="store_true", help="quality only: skip the worker-process timings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return

    population = args.population or (16 if args.quick else 40)
    generations = args.generations or (23 if args.quick else 119)
    instances = QUICK_INSTANCES if args.quick else INSTANCES
    K, R = args.islands, args.rounds

    rows = [quality(*inst, population=population, generations=generations, islands=K, rounds=R, seed=args.seed)
            for inst in instances]
    print_quality(rows, population=population, generations=generations, islands=K, rounds=R)

    record = {"benchmark": "islands", "population": population, "generations": generations, "islands": K,
              "rounds": R, "instances": rows, "cpu_count": os.cpu_count()}
    if args.no_timing:
        print(json.dumps({**record, "wall_time": [], "load_average": os.getloadavg()[0]}))
        return
    timing_instance = instances[0] if args.quick else TIMING_INSTANCE
    timing_generations = generations  # the wide islands: each the one search's budget
    timings = median_timings(timing_instance, repeats=args.repeats or (1 if args.quick else 3), population=population,
                             generations=timing_generations, islands=K, seed=args.seed)
    where = "/".join(map(str, timing_instance))
    print(f"\nWall time of {K} islands (P {population} x G {timing_generations}) on {where}, one process per "
          f"island; cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'workers':>8}{'wall s':>9}{'speedup':>9}{'CPU s':>8}{'search s':>10}{'process s':>11}  all wall s")
    for t in timings:
        print(f"{t['workers']:>8}{t['seconds']:>9.2f}{t['speedup']:>9.2f}{t['children_cpu_seconds']:>8.2f}"
              f"{t['island_search_seconds']:>10.2f}{t['island_process_seconds']:>11.2f}  "
              + " ".join(f"{x:.2f}" for x in t["all_seconds"]))
    print(json.dumps({**record, "timing_instance": list(timing_instance), "wall_time": timings,
                      "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
