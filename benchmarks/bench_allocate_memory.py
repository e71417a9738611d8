"""Peak memory of the allocate step on a large workload (target <= 1 GB at 20,000 tasks x 256 nodes).

Runs ``apportion.operators.allocating.allocate`` in a child process on the specs
``apportion scenario medical_diagnosis --size 3000 --nodes 256`` writes (21,000 tasks), as an
Airflow worker would: specs read through the storage root, search, files, charts, MLflow upload
(a throwaway sqlite store). A thread samples the child's RSS every 20 ms and charges it to the
phase running then (loading the specs, building the instance, the search, writing files and
charts, MLflow), so the table says what dominates. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_MB = 1024
PHASES = ("imports", "load specs", "build instance", "search", "files and charts", "mlflow")


def child(args) -> None:
    """In the child: allocate once with phases marked, print the JSON record."""
    import threading
    import time

    import psutil

    process = psutil.Process()
    peaks = {name: 0.0 for name in PHASES}
    state = {"phase": "imports", "running": True}

    def sample():
        while state["running"]:
            rss = process.memory_info().rss / 2**20
            peaks[state["phase"]] = max(peaks[state["phase"]], rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    from apportion.core import api, io, model
    from apportion.operators import allocating, charts, tracking
    from apportion.operators.tracking import AirflowRef

    def marked(owner, name, phase, after=None):
        real = getattr(owner, name)

        def wrapper(*a, **k):
            state["phase"] = phase
            try:
                return real(*a, **k)
            finally:
                if after:
                    state["phase"] = after
        setattr(owner, name, wrapper)

    marked(io, "load_workload", "load specs")
    marked(io, "load_cluster", "load specs")
    marked(model.Instance, "build", "build instance")
    marked(api, "optimize", "search", after="files and charts")
    marked(charts, "gantt_chart", "files and charts")
    marked(tracking.Tracker, "experiment_id", "mlflow")
    started = time.perf_counter()
    summary = allocating.allocate(args.workload, args.cluster, population=args.population,
                                  generations=args.generations, seed=0, output_root=args.root,
                                  ref=AirflowRef("memory_benchmark", "manual__1", "allocate"))
    seconds = time.perf_counter() - started
    state["running"] = False
    sampler.join()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "phases": peaks, "seconds": seconds,
                      "makespan": summary["makespan"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small instance (300 cases, 32 nodes), 2 generations")
    parser.add_argument("--size", type=int, default=3000, help="medical_diagnosis cases (7 tasks each)")
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "CLUSTER", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.workload, args.cluster, args.root = args.child
        child(args)
        return
    if args.quick:
        args.size, args.nodes, args.generations = 300, 32, 2
    with tempfile.TemporaryDirectory(prefix="apportion-bench-memory-") as scratch:
        specs = Path(scratch) / "specs"
        subprocess.run([sys.executable, "-m", "apportion.core.cli", "scenario", "medical_diagnosis", "--size",
                        str(args.size), "--nodes", str(args.nodes), "--out", str(specs)], check=True,
                       stdout=subprocess.DEVNULL)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch}/mlflow.db",
               "NUMBA_THREADING_LAYER": os.environ.get("NUMBA_THREADING_LAYER", "workqueue")}
        env.pop("APPORTION_STORAGE_URL", None)
        done = subprocess.run([sys.executable, __file__, "--population", str(args.population), "--generations",
                               str(args.generations), "--child", str(specs / "workload.yaml"),
                               str(specs / "cluster.yaml"), str(Path(scratch) / "runs")],
                              env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the allocate step failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    tasks = args.size * 7
    print(f"allocate step: {tasks} tasks x {args.nodes} nodes, population {args.population} x "
          f"{args.generations} generations, {record['seconds']:.1f} s")
    print(f"{'phase':<18} {'peak RSS (MiB)':>15}")
    for name in PHASES:
        print(f"{name:<18} {record['phases'][name]:>15.0f}")
    print(f"{'whole step':<18} {record['peak_rss_mb']:>15.0f}   (target <= {TARGET_MB})")
    dominant = max(PHASES, key=lambda name: record["phases"][name])
    print(json.dumps({"benchmark": "allocate_memory", "tasks": tasks, "nodes": args.nodes,
                      "population": args.population, "generations": args.generations,
                      "peak_rss_mb": record["peak_rss_mb"], "phase_peak_rss_mb": record["phases"],
                      "dominant_phase": dominant, "target_mb": TARGET_MB,
                      "within_target": record["peak_rss_mb"] <= TARGET_MB, "seconds": record["seconds"]}))


if __name__ == "__main__":
    main()
