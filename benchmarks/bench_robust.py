"""Robust against nominal plans under noise: does searching over sampled scenarios pay off?

On each instance ``optimize`` runs twice with the same seed, population and generations: once
on the nominal objectives, once in robust mode (``Settings.robust_scenarios``: p95 makespan,
mean utilisation and imbalance over K scenarios, searched from the nominal choice and picked
after re-scoring on fresh validation scenarios; docs/robust.md). The knee plan of each run is then enacted by the
simulator on fresh samples (another seed than the K scenarios): noise only, then noise plus node
failures; each front's fastest plan is compared under noise as well. Printed: for the first
search seed, the p50/p95 realised makespan of both plans and the ratio robust / nominal of the
p95 per instance; every run's ratios and knees' planned makespans; over all seeds, in how many
runs the robust p95 is lower, tied (within 0.1%) or higher, the ratios, and how closely the knee
ratio follows the ratio of the two knees' planned makespans. The claim "robust knee p95 < nominal
knee p95" is reported as it comes out. One JSON line at the end.

    python benchmarks/bench_robust.py [--quick] [--scenarios K] [--statistic p95|mean] [--sigma S]
                                      [--samples N] [--seeds N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core.api import Settings, optimize  # noqa: E402
from apportion.core.evaluate import STAT_INDEX  # noqa: E402
from apportion.core.model import Instance  # noqa: E402
from apportion.core.robust import STATISTICS  # noqa: E402
from apportion.core.scenarios import build  # noqa: E402
from apportion.core.simulate import Uncertainty, simulate  # noqa: E402
from apportion.core.synthetic import random_cluster, random_workload  # noqa: E402

SIMULATION_SEED = 20_250_101  # fresh samples: not the seed the K scenarios are drawn from


def instances(quick: bool) -> dict[str, Instance]:
    small = quick
    return {
        # Cases released over an hour (the scenario's default) and all at once (a backlog).
        "medical_diagnosis": Instance.build(*build("medical_diagnosis", size=4 if small else 8, nodes=8, seed=1)),
        "medical_backlog": Instance.build(*build("medical_diagnosis", size=4 if small else 8, nodes=8, seed=1,
                                                 window=0.0)),
        "traffic_prediction": Instance.build(*build("traffic_prediction", size=4 if small else 9, nodes=8, seed=1)),
        "random": Instance.build(random_workload(60 if small else 120, 150 if small else 300, seed=7, n_requests=4),
                                 random_cluster(8, seed=7)),
    }


def realised(instance: Instance, plan, uncertainty: Uncertainty, samples: int) -> dict[str, float]:
    makespan = simulate(instance, plan, uncertainty, samples=samples, seed=SIMULATION_SEED)["makespan"]
    p50, p95 = np.percentile(makespan, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(makespan.mean())}


def compare(name: str, instance: Instance, args, seed: int) -> dict:
    budget = {"population": args.population, "generations": args.generations, "seed": seed}
    nominal = optimize(instance, Settings(**budget))
    robust = optimize(instance, Settings(**budget, robust_scenarios=args.scenarios, robust_statistic=args.statistic,
                                         noise_sigma=args.sigma))
    noise = Uncertainty(duration_sigma=args.sigma, transfer_sigma=args.sigma)
    # Failures: every node fails on average once per 20 nominal makespans, repairs take 5% of one.
    horizon = nominal.metrics["makespan"]
    failures = Uncertainty(duration_sigma=args.sigma, transfer_sigma=args.sigma, mtbf=20.0 * horizon,
                           repair_mean=0.05 * horizon, failure_rule="retry")
    row = {"instance": name, "seed": seed, "tasks": instance.n_tasks, "edges": instance.n_edges, "nodes": instance.n_nodes,
           "seconds": {"nominal": nominal.seconds, "robust": robust.seconds}}
    for label, result in (("nominal", nominal), ("robust", robust)):
        plan = result.chosen.plan
        row[label] = {
            "planned_makespan": result.metrics["makespan"],
            "utilization": result.metrics["utilization"],
            "imbalance": result.metrics["imbalance"],
            "pareto_size": result.pareto_size,
            "noise": realised(instance, plan, noise, args.samples),
            "failures": realised(instance, plan, failures, args.samples),
        }
        if result.robust_metrics is not None:
            row[label]["robust_makespan"] = result.robust_metrics["makespan"]
        # The knee trades makespan for utilisation and balance; the front's fastest plan (by
        # the run's own makespan objective) isolates what the robust objective does to speed.
        fastest = result.front[int(np.argmin(result.front_stats[:, STAT_INDEX["makespan"]]))]
        row[label]["fastest_noise"] = realised(instance, fastest, noise, args.samples)
    for case in CASES:
        ratio = row["robust"][case]["p95"] / row["nominal"][case]["p95"]
        row[f"p95_ratio_{case}"] = ratio
        row[f"robust_p95_lower_{case}"] = bool(ratio < 1.0 - TIE)
        row[f"robust_p95_tie_{case}"] = bool(abs(ratio - 1.0) <= TIE)
    return row


CASES = ("noise", "failures", "fastest_noise")
# A p95 ratio this close to 1 is a tie: the two plans' tails are the same to the benchmark's
# resolution (medical_diagnosis, where the last release sets the makespan of every plan).
TIE = 0.001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small instances and budget (a smoke run)")
    parser.add_argument("--scenarios", type=int, default=24, help="K scenarios of the robust search")
    parser.add_argument("--statistic", default="p95", choices=STATISTICS, help="robust aggregate")
    parser.add_argument("--sigma", type=float, default=0.3, help="lognormal sigma of durations and transfers")
    parser.add_argument("--samples", type=int, default=1000, help="simulated samples per plan and case")
    parser.add_argument("--population", type=int)
    parser.add_argument("--generations", type=int)
    parser.add_argument("--seed", type=int, default=0, help="first search seed")
    parser.add_argument("--seeds", type=int, help="search seeds per instance (seed, seed+1, ...)")
    args = parser.parse_args()
    args.population = args.population or (24 if args.quick else 60)
    args.generations = args.generations or (15 if args.quick else 100)
    args.seeds = args.seeds or (2 if args.quick else 10)
    if args.quick:
        args.samples = min(args.samples, 200)

    warm = instances(True)["random"]  # compile outside the timed searches
    for k in (0, 2):
        optimize(warm, Settings(population=8, generations=2, robust_scenarios=k))
    started = time.perf_counter()
    rows = [compare(name, inst, args, seed) for name, inst in instances(args.quick).items()
            for seed in range(args.seed, args.seed + args.seeds)]
    print(f"Robust ({args.statistic} makespan over K={args.scenarios} scenarios, sigma {args.sigma:g}) vs nominal NSGA-II knee "
          f"plans; population {args.population} x {args.generations} generations; {args.samples} fresh simulated "
          f"samples per plan")
    print(f"Search seed {args.seed}:")
    print(f"  {'instance':<19} {'tasks':>5} {'case':<13} {'plan':<8} {'planned':>8} {'p50':>8} {'p95':>8} "
          f"{'p95 robust/nominal':>19} {'search s':>9}")
    for r in rows:
        if r["seed"] != args.seed:
            continue
        for case in CASES:
            for label in ("nominal", "robust"):
                x = r[label]
                verdict = "lower" if r[f"robust_p95_lower_{case}"] else "tie" if r[f"robust_p95_tie_{case}"] else "higher"
                ratio = f"{r[f'p95_ratio_{case}']:.3f} {verdict}" if label == "robust" else ""
                planned = f"{x['planned_makespan']:.2f}" if case != "fastest_noise" else ""
                print(f"  {r['instance']:<19} {r['tasks']:>5} {case:<13} {label:<8} {planned:>8} "
                      f"{x[case]['p50']:>8.2f} {x[case]['p95']:>8.2f} {ratio:>19} {r['seconds'][label]:>9.2f}")
    print("  planned: nominal makespan of the plan, s; p50/p95: realised makespan over the fresh samples, s;")
    print("  fastest_noise: each front's fastest plan (by its own makespan objective) under noise; search s: "
          "optimize() seconds")
    print("Every run: p95 ratio robust/nominal per case; planned makespan of the knees, nominal -> robust")
    for r in rows:
        ratios = " ".join(f"{case} {r[f'p95_ratio_{case}']:.3f}" for case in CASES)
        print(f"  {r['instance']:<19} seed {r['seed']:<3} {ratios}   planned "
              f"{r['nominal']['planned_makespan']:.1f} -> {r['robust']['planned_makespan']:.1f}")
    print(f"Over {args.seeds} search seeds: runs where the robust p95 is lower / tied (ratio within {TIE:.1%} of 1) / "
          "higher; p95 ratio robust/nominal (geometric mean, min..max)")
    summary = {}
    print(f"  {'instance':<19} " + " ".join(f"{case:>36}" for case in CASES))
    for name in dict.fromkeys(r["instance"] for r in rows):
        mine = [r for r in rows if r["instance"] == name]
        summary[name] = {}
        cells = []
        for case in CASES:
            ratios = np.array([r[f"p95_ratio_{case}"] for r in mine])
            wins = int(sum(r[f"robust_p95_lower_{case}"] for r in mine))
            ties = int(sum(r[f"robust_p95_tie_{case}"] for r in mine))
            gmean = float(np.exp(np.log(ratios).mean()))
            summary[name][case] = {"wins": wins, "ties": ties, "runs": len(mine), "ratio_gmean": gmean,
                                   "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max())}
            cells.append(f"{wins}/{ties}/{len(mine) - wins - ties} {gmean:.3f} ({ratios.min():.3f}..{ratios.max():.3f})")
        print(f"  {name:<19} " + " ".join(f"{c:>36}" for c in cells))
    # How much of the knee comparison is where the two knees sit on their fronts: the log p95
    # ratio against the log ratio of the knees' planned (nominal) makespans, over all runs whose
    # knees are not tied (on medical_diagnosis the last release sets every makespan).
    moved = [r for r in rows if not r["robust_p95_tie_noise"]]
    knee_shift = None
    if len(moved) > 2:
        shift = np.log([r["robust"]["planned_makespan"] / r["nominal"]["planned_makespan"] for r in moved])
        outcome = np.log([r["p95_ratio_noise"] for r in moved])
        knee_shift = float(np.corrcoef(shift, outcome)[0, 1])
        print(f"Knee position: over the {len(moved)} untied runs, the correlation of log(p95 ratio) with "
              f"log(planned makespan robust knee / nominal knee) is {knee_shift:.2f}")
    print(json.dumps({"benchmark": "robust", "scenarios": args.scenarios, "statistic": args.statistic,
                      "sigma": args.sigma,
                      "population": args.population, "generations": args.generations, "seeds": args.seeds,
                      "samples": args.samples, "summary": summary, "knee_shift_correlation": knee_shift, "runs": rows,
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
