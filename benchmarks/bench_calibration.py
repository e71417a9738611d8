"""Calibration: from declared speeds off by 2x, consecutive runs bring the prediction error down.

Each run plans a small workload (``requests`` cases x three steps: dense -> spectral -> dense,
new work sizes every run, as a scheduled run gets new data) on a two-node cluster with HEFT,
then executes every step for real, one at a time in the plan's dispatch order: a fresh Python
subprocess per step (as Airflow's task runner starts one per task instance, so the per-task
start-up is real) that does the step's work with NumPy on the node's code path. The "blas" node
runs its dense work as 256 x 256 matrix products and its spectral work as 65,536-point FFTs; the
"loop" node runs 16 x 16 products and 256-point FFTs, so it is genuinely slower per GFLOP. Every
duration is measured (wall time of the subprocess), none computed.

Declared speeds come from a probe of each kernel (GFLOP/s timed inside a step process, its
start-up left out), then set off by 2x: the blas node declared at twice its probed speed, the loop node at half.
Overhead is declared 0. After each run, ``core.calibrate`` merges the run's observations (step
work, node, kind, measured duration) and the next run plans with ``apply_calibration``'s
cluster (``calibrate.update``: merge and save; with ``--tracking-uri`` each run is logged to MLflow).
Printed per run: the median absolute relative error of the predicted step durations
(the model's duration table for the task on its planned node vs the measured one; target: below
20 % by run 3), and the fitted overhead and speeds. Prints a table and one JSON line.

    python benchmarks/bench_calibration.py [--quick] [--runs N] [--requests N] [--seed N] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core import calibrate
from apportion.core.api import Settings, optimize
from apportion.core.calibrate import Observation
from apportion.core.model import Cluster, Edge, Instance, Node, Request, Task, Workload
from apportion.operators.tracking import log_calibration

TARGET_ERROR = 0.20
EXPERIMENT = "calibration_benchmark"
# Per node: (matrix side of the dense products, FFT length of the spectral work).
CODE_PATHS = {"blas": (256, 65536), "loop": (16, 256)}
DECLARED_OFF_BY = {"blas": 2.0, "loop": 0.5}  # declared speed / probed speed
STEP_ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# One step: the work (GFLOP) of a kind on a node's code path, in a fresh interpreter.
STEP = """
import sys
import numpy as np
kind, work, side, length = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
if kind == "dense":
    a, b, c = rng.random((side, side)), rng.random((side, side)), np.empty((side, side))
    for _ in range(max(1, round(work * 1e9 / (2.0 * side ** 3)))):
        np.matmul(a, b, out=c)
else:
    x = rng.random(length) + 0j
    for _ in range(max(1, round(work * 1e9 / (5.0 * length * np.log2(length))))):
        np.fft.fft(x)
"""

# A probe: the step's kernel called for ``seconds``, timed inside the process.
PROBE = """
import sys, time
import numpy as np
kind, seconds, side, length = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
a, b, c = rng.random((side, side)), rng.random((side, side)), np.empty((side, side))
x = rng.random(length) + 0j
step = (lambda: np.matmul(a, b, out=c)) if kind == "dense" else (lambda: np.fft.fft(x))
step()
calls, started = 0, time.perf_counter()
while time.perf_counter() - started < seconds:
    step()
    calls += 1
print(calls / (time.perf_counter() - started))
"""


def flops_per_call(kind: str, node: str) -> float:
    side, length = CODE_PATHS[node]
    return 2.0 * side ** 3 if kind == "dense" else 5.0 * length * np.log2(length)


def probe(kind: str, node: str, seconds: float = 0.4) -> float:
    """GFLOP/s of ``kind`` on ``node``'s code path, timed inside a step process (as the steps
    run: one BLAS thread), its start-up left out."""
    side, length = CODE_PATHS[node]
    done = subprocess.run([sys.executable, "-c", PROBE, kind, repr(seconds), str(side), str(length)], check=True,
                          env=STEP_ENV, capture_output=True, text=True)
    return float(done.stdout) * flops_per_call(kind, node) / 1e9


def declared_cluster(probed: dict[tuple[str, str], float]) -> Cluster:
    """Both nodes declared off by 2x; the spectral kind's factor as probed on each node."""
    nodes = tuple(Node(id=node, kind=node, speed=probed[(node, "dense")] * DECLARED_OFF_BY[node], memory=8.0)
                  for node in CODE_PATHS)
    factors = {node: {"spectral": probed[(node, "spectral")] / probed[(node, "dense")]} for node in CODE_PATHS}
    return Cluster(nodes=nodes, default_bandwidth=1000.0, speed_factors=factors, name="two-nodes")


def workload(run: int, requests: int, probed: dict[tuple[str, str], float], seed: int) -> Workload:
    """``requests`` cases of dense -> spectral -> dense; step sizes drawn so that a step takes
    0.05-0.5 s of work on the blas node. Half the cases may only run on the loop node, so that
    both nodes see both kinds whatever the plan prefers."""
    rng = np.random.default_rng([seed, run])
    tasks, edges = [], []
    for r in range(requests):
        only = ("loop",) if r % 2 else None
        steps = [(f"c{r}_prep", "dense"), (f"c{r}_spec", "spectral"), (f"c{r}_fuse", "dense")]
        for task_id, kind in steps:
            node = only[0] if only else "blas"
            work = float(probed[(node, kind)] * rng.uniform(0.05, 0.5))
            tasks.append(Task(id=task_id, work=work, kind=kind, request=f"c{r}", allowed_kinds=only))
        edges += [Edge(steps[0][0], steps[1][0], 1.0), Edge(steps[1][0], steps[2][0], 1.0)]
    return Workload(tasks=tuple(tasks), edges=tuple(edges), requests=tuple(Request(f"c{r}") for r in range(requests)),
                    name=f"run{run}")


def execute(kind: str, work: float, node: str) -> float:
    """Run one step in a fresh interpreter; its wall seconds."""
    side, length = CODE_PATHS[node]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", STEP, kind, repr(float(work)), str(side), str(length)], check=True,
                   env=STEP_ENV)
    return time.perf_counter() - started


def one_run(run: int, cluster: Cluster, args, probed) -> tuple[list[Observation], dict]:
    """Plan the run's workload on ``cluster``, execute its steps, compare predicted and measured."""
    result = optimize(Instance.build(workload(run, args.requests, probed, args.seed), cluster),
                      Settings(algorithm="heft"))
    inst, plan = result.instance, result.chosen.plan
    observations, predicted = [], []
    for t in plan.order.tolist():
        j = int(plan.assignment[t])
        task, node = inst.workload.tasks[t], inst.node_ids[j]
        observations.append(Observation(node, task.kind, task.work, execute(task.kind, task.work, node),
                                        run_id=f"run{run}"))
        predicted.append(float(inst.duration[t, j]))
    measured = np.array([o.duration for o in observations])
    errors = np.abs(np.array(predicted) - measured) / measured
    return observations, {"run": run, "steps": len(observations), "median_abs_error": float(np.median(errors)),
                          "mean_abs_error": float(errors.mean()), "max_abs_error": float(errors.max()),
                          "measured_seconds": float(measured.sum()),
                          "steps_by_node": {nd: sum(o.node == nd for o in observations) for nd in CODE_PATHS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cases per run (smoke run)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=None, help="cases per run (default 6, 2 with --quick)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracking-uri", metavar="URI",
                        help=f"log each run's calibration to MLflow (experiment {EXPERIMENT!r}): the error falling "
                             "shows in its chart view")
    args = parser.parse_args()
    args.requests = args.requests or (2 if args.quick else 6)
    load_before = os.getloadavg()
    started = time.perf_counter()

    probed = {(node, kind): probe(kind, node) for node in CODE_PATHS for kind in ("dense", "spectral")}
    declared = declared_cluster(probed)
    client = experiment = None
    if args.tracking_uri:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(args.tracking_uri)
        found = client.get_experiment_by_name(EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    cluster, rows = declared, []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / calibrate.CALIBRATION_FILE
        for run in range(1, args.runs + 1):
            observations, row = one_run(run, cluster, args, probed)
            mlflow_run = client.create_run(experiment, run_name=f"run{run}").info.run_id if client else None
            step = calibrate.update(path, observations, declared, run_id=f"run{run}", fitted_at=f"run{run}")
            if client:
                log_calibration(step.calibration, mlflow_run, tracking_uri=args.tracking_uri,
                                error_before=step.error_before, error_after=step.error_after)
                client.set_terminated(mlflow_run)
            cluster, calibration = step.cluster, step.calibration
            row.update(fit=calibrate.group_table(calibration), error_after_fit=step.error_after, mlflow_run_id=mlflow_run)
            rows.append(row)
    seconds = time.perf_counter() - started
    final = rows[-1]["median_abs_error"]

    print(f"Calibration, {args.runs} runs x {rows[0]['steps']} steps ({args.requests} cases of dense -> spectral -> "
          f"dense), a fresh subprocess per step; declared speeds off by 2x (blas x2, loop x0.5), overhead 0")
    print("  probed GFLOP/s (inside a step process, start-up left out): " + ", ".join(f"{n}/{k} {v:.2f}" for (n, k), v in probed.items()))
    print(f"  {'run':>3} {'steps':>5} {'blas':>4} {'loop':>4} {'median err':>10} {'mean err':>8} {'max err':>8} "
          f"{'measured s':>10}")
    for r in rows:
        print(f"  {r['run']:>3} {r['steps']:>5} {r['steps_by_node']['blas']:>4} {r['steps_by_node']['loop']:>4} "
              f"{r['median_abs_error']:>10.1%} {r['mean_abs_error']:>8.1%} {r['max_abs_error']:>8.1%} "
              f"{r['measured_seconds']:>10.2f}")
    print("  err: |predicted - measured| / measured per step, the prediction made by the plan of that run "
          "(run 1: declared model; run k: calibrated on runs 1..k-1)")
    print("  fit after each run (speed GFLOP/s, overhead s per task, source):")
    for r in rows:
        cells = [f"{g['node']}/{g['kind']} {g['speed']:.2f} ({g['speed_source']}, n={g['count']})" for g in r["fit"]]
        over = {g["node"]: (g["overhead"], g["overhead_source"]) for g in r["fit"]}
        print(f"    run {r['run']}: " + "; ".join(cells) + "; overhead " +
              ", ".join(f"{n} {o:.3f} ({s})" for n, (o, s) in over.items()))
    print("  declared: " + ", ".join(f"{nd.id} {nd.speed:.2f}" for nd in declared.nodes) +
          f"; final median error {final:.1%} (target < {TARGET_ERROR:.0%}: {'met' if final < TARGET_ERROR else 'NOT met'})")
    print(f"  {seconds:.1f} s in all; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          "(2 shared cores)")
    print(json.dumps({"benchmark": "calibration", "runs": rows, "probed": {f"{n}/{k}": v for (n, k), v in probed.items()},
                      "declared": {nd.id: nd.speed for nd in declared.nodes}, "final_median_abs_error": final,
                      "target": TARGET_ERROR, "target_met": final < TARGET_ERROR, "seconds": seconds,
                      "calibration": calibration.to_dict() | {"observations": len(calibration.observations)},
                      "load_average_before": load_before}))


if __name__ == "__main__":
    main()
