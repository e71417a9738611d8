"""The ``apportion`` command line: optimise a plan, validate a spec, write a scenario, compare runs.

Bad input ends the command with one readable line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import SpecError

ALGORITHMS = ("nsga2", "nsga3", "heft", "greedy", "round-robin", "least-loaded", "shortest-first",
              "weighted-balance", "min-min", "random")


def _objectives(values: list[str]) -> tuple[str, ...]:
    """Accept ``--objectives makespan utilization`` and ``--objectives makespan,utilization``."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _optimize(args: argparse.Namespace) -> int:
    from core.api import Settings, optimize, write_outputs
    from core.io import load_instance

    instance = load_instance(args.workload, args.cluster)
    settings = Settings(algorithm=args.algorithm, population=args.population, generations=args.generations,
                        seed=args.seed, objectives=_objectives(args.objectives), select=args.select,
                        robust_scenarios=args.robust, robust_statistic=args.robust_statistic,
                        noise_sigma=args.noise_sigma)
    bar = None
    if sys.stderr.isatty() and not args.json and settings.algorithm in ("nsga2", "nsga3"):
        from tqdm import tqdm

        bar = tqdm(total=settings.generations, unit="gen", desc=settings.algorithm, file=sys.stderr)

    def progress(generation: int, record: dict) -> None:
        bar.update(generation - bar.n)
        bar.set_postfix(hv=f"{record.get('hypervolume', float('nan')):.3f}", refresh=False)

    try:
        result = optimize(instance, settings, progress=progress if bar else None)
    finally:
        if bar:
            bar.close()
    paths = write_outputs(result, args.out)
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "outputs": {k: str(v) for k, v in paths.items()}}))
        return 0
    m = result.metrics
    print(f"{settings.algorithm} on {instance.n_tasks} tasks / {instance.n_nodes} nodes, seed {settings.seed}: "
          f"{summary['pareto_size']} plans on the front, {summary['evaluations']:,} evaluations in "
          f"{summary['seconds']:.2f} s")
    print(f"chosen ({settings.select}): makespan {m['makespan']:.2f} s, utilization {m['utilization']:.3f}, "
          f"imbalance {m['imbalance']:.3f}, p95 response {m['p95_response']:.2f} s, "
          f"deadline misses {m['deadline_misses']}, hypervolume {summary['hypervolume']:.4f}")
    if result.robust_metrics is not None:
        r = result.robust_metrics
        print(f"robust ({settings.robust_statistic} over {settings.robust_scenarios} scenarios, noise sigma "
              f"{settings.noise_sigma:g}): makespan {r['makespan']:.2f} s, utilization {r['utilization']:.3f}, "
              f"imbalance {r['imbalance']:.3f}")
    if summary["unroutable_edges"]:
        print(f"warning: this plan cannot run: {summary['unroutable_edges']} edges join nodes with no link "
              "between them", file=sys.stderr)
    for name, path in paths.items():
        print(f"  {name:<9} {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from core.io import describe

    print(describe(args.file))
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from datetime import datetime

    from core.io import dump
    from core.scenarios import build
    from core.spec import cluster_to_dict, workload_to_dict

    logical_date = None
    if args.logical_date:
        try:
            logical_date = datetime.fromisoformat(args.logical_date)
        except ValueError:
            raise SpecError("logical_date", f"not an ISO date-time: {args.logical_date!r}") from None
    workload, cluster = build(args.name, size=args.size, nodes=args.nodes, seed=args.seed,
                              logical_date=logical_date)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dump(workload_to_dict(workload), out / "workload.yaml")
    dump(cluster_to_dict(cluster), out / "cluster.yaml")
    print(f"{args.name}: {len(workload.tasks)} tasks, {len(workload.edges)} edges, {len(cluster.nodes)} nodes "
          f"-> {out / 'workload.yaml'}, {out / 'cluster.yaml'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from operators.tracking import compare_runs

    compare_runs(args.experiment, tracking_uri=args.tracking_uri, out=args.out)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from operators.demo import run_demo

    return run_demo(state_dir=Path(args.state_dir), exit_when_done=args.exit_when_done)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apportion", description="Decide where the steps of AI workflows run.")
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="find the trade-offs and pick a plan")
    opt.add_argument("workload", help="workload spec: JSON/YAML, WfFormat JSON, or a folder of CSV tables")
    opt.add_argument("cluster", help="cluster spec: JSON/YAML or a folder of CSV tables")
    opt.add_argument("--algorithm", default="nsga2", choices=ALGORITHMS)
    opt.add_argument("--population", type=int, default=100)
    opt.add_argument("--generations", type=int, default=200)
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--objectives", nargs="+", default=["makespan", "utilization", "imbalance"],
                     help="makespan utilization imbalance mean_response energy cost (space or comma separated)")
    opt.add_argument("--select", default="knee", help="knee | weights:a,b,c | sla:SECONDS")
    opt.add_argument("--robust", type=int, default=0, metavar="K",
                     help="score plans over K sampled noise scenarios (0: nominal; docs/robust.md)")
    opt.add_argument("--robust-statistic", default="p95", choices=("mean", "p95"),
                     help="aggregate over the scenarios: p95 of the time-like objectives, or the mean")
    opt.add_argument("--noise-sigma", type=float, default=0.3, metavar="S",
                     help="lognormal sigma of task durations and transfers in the scenarios")
    opt.add_argument("--out", default="out", help="folder for plan.json, pareto.csv, schedule.csv")
    opt.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    opt.set_defaults(run=_optimize)

    val = sub.add_parser("validate", help="check a spec file and explain what is wrong")
    val.add_argument("file")
    val.set_defaults(run=_validate)

    scn = sub.add_parser("scenario", help="write a generated scenario's workload and cluster specs")
    scn.add_argument("name", help="medical_diagnosis | traffic_prediction | multimodal_speech")
    scn.add_argument("--size", type=int, help="cases / regions / streams")
    scn.add_argument("--nodes", type=int)
    scn.add_argument("--seed", type=int, default=0)
    scn.add_argument("--logical-date", help="ISO date-time (traffic load follows the time of day)")
    scn.add_argument("--out", default="scenario")
    scn.set_defaults(run=_scenario)

    cmp_ = sub.add_parser("compare", help="how runs of one workflow evolved in MLflow")
    cmp_.add_argument("experiment", help="MLflow experiment (one per workflow DAG)")
    cmp_.add_argument("--tracking-uri", help="defaults to MLFLOW_TRACKING_URI")
    cmp_.add_argument("--out", help="write the plot here (PNG)")
    cmp_.set_defaults(run=_compare)

    demo = sub.add_parser("demo", help="start Airflow and MLflow locally, run the three workflow DAGs once")
    demo.add_argument("--state-dir", default=".demo", help="Airflow home, MLflow store and logs go here")
    demo.add_argument("--exit-when-done", action="store_true",
                      help="stop the servers once the runs are reported (default: keep them up until Ctrl-C)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpecError as error:
        print(f"apportion: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apportion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
