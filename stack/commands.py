"""The ``apportion`` commands that drive Airflow and MLflow, plugged into the core's command line
through the entry-point group ``apportion.commands`` (see pyproject.toml): the core knows
nothing of Airflow or MLflow, and a command that cannot load is skipped with a warning.

Each ``register_*`` adds its subparser and sets ``run``, the handler ``main`` calls; heavy
modules load inside the handlers.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from apportion.stack.history import BACKFILL_RUNS


def register_demo(subparsers) -> None:
    """``apportion demo``: Airflow standalone and MLflow locally, the three workflow DAGs on their
    schedules with a short history of runs, compared."""
    demo = subparsers.add_parser("demo", help="start Airflow and MLflow locally, run the three workflow DAGs on "
                                              "their schedules with a day's history, compare the runs "
                                              "(docs/demo.md)")
    demo.add_argument("--state-dir", default=".demo", metavar="DIR",
                      help="Airflow home, MLflow store, Numba cache and logs go here")
    demo.add_argument("--exit-when-done", action="store_true",
                      help="stop the servers once the runs are reported (off: keep them up, scheduled runs "
                           "coming, until Ctrl-C)")
    demo.add_argument("--backfill-runs", type=_non_negative_int, default=BACKFILL_RUNS, metavar="N",
                      help="backfill traffic_prediction at N times spread over the past day (0: none)")
    demo.set_defaults(run=_demo)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _demo(args: argparse.Namespace) -> int:
    with _needs_extra("demo"):
        from apportion.stack.demo import run_demo

    return run_demo(state_dir=Path(args.state_dir), exit_when_done=args.exit_when_done,
                    backfill_runs=args.backfill_runs)


@contextmanager
def _needs_extra(command: str, extra: str = "airflow"):
    """A command whose libraries are not installed is one error line saying what to install."""
    try:
        yield
    except ImportError as error:
        from apportion.core.errors import SpecError

        raise SpecError(command, f"needs the '{extra}' extra: pip install 'apportion[{extra}]' ({error})") from None


def register_compare(subparsers) -> None:
    """``apportion compare``: how the runs of one workflow evolved in MLflow."""
    compare = subparsers.add_parser("compare", help="how runs of one workflow evolved in MLflow")
    compare.add_argument("experiment", help="MLflow experiment (one per workflow DAG, named after it)")
    compare.add_argument("--tracking-uri", metavar="URI",
                         help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the Airflow connection "
                              "mlflow_default)")
    compare.add_argument("--out", metavar="PNG", help="write the plot here (default: EXPERIMENT-runs.png)")
    compare.set_defaults(run=_compare)


def _compare(args: argparse.Namespace) -> int:
    """Run ``compare_runs``; a missing or unreachable tracking server and an unknown experiment
    become one ``SpecError`` line."""
    from apportion.core.errors import SpecError

    with _needs_extra("compare"):
        from mlflow.exceptions import MlflowException

        from apportion.operators.hooks import TrackingNotConfigured, resolve_tracking_uri
        from apportion.operators.tracking import TrackingUnavailable, compare_runs

    try:
        uri = resolve_tracking_uri(args.tracking_uri)
        _check_sqlite_store(uri)
        compare_runs(args.experiment, tracking_uri=uri, out=args.out)
    except SpecError:
        raise
    except (TrackingNotConfigured, TrackingUnavailable, MlflowException) as error:
        raise SpecError("tracking_uri", _first_line(error)) from None
    except ValueError as error:  # compare_runs: no experiment of that name
        raise SpecError("experiment", _first_line(error)) from None
    return 0


def _check_sqlite_store(uri: str) -> None:
    """A sqlite store must exist already: MLflow would create an empty one (a mistyped path
    then leaves a stray database behind) and find no experiment in it."""
    from apportion.core.errors import SpecError

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise SpecError("tracking_uri", f"no MLflow store at {path} (from {uri})")


def register_cluster(subparsers) -> None:
    """``apportion cluster up|down|status``: Airflow on Celery workers and MLflow on PostgreSQL and
    Redis, on this machine (docs/cluster.md)."""
    cluster = subparsers.add_parser("cluster", help="start, stop or check Airflow with Celery workers and MLflow "
                                                    "on PostgreSQL and Redis (docs/cluster.md)")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="{up,down,status}",
                                    help="up: start the set; down: stop it; status: what runs")
    up = actions.add_parser("up", help="create the databases, start API server, scheduler, DAG processor, "
                                       "Celery workers and MLflow in the background")
    up.add_argument("--workers", type=_positive_int, metavar="N",
                    help="N workers serving 'default' and 'optimizer' in turn (default: 2, one of each)")
    up.add_argument("--queues", action="append", metavar="Q1,Q2",
                    help="one worker serving these queues; repeat for each worker (instead of --workers)")
    up.add_argument("--node-workers", metavar="CLUSTER_SPEC",
                    help="also one worker per up node of this cluster spec, serving only the node's queue "
                         "(node-<ID>) with the node's slots as its concurrency: where enacted steps run "
                         "(docs/enactment.md)")
    up.add_argument("--concurrency", type=_positive_int, default=1, metavar="N",
                    help="tasks each worker runs at once (a node worker runs its node's slots)")
    up.add_argument("--postgres", default=None, metavar="URL",
                    help="PostgreSQL server for Airflow's and MLflow's databases (default: "
                         "postgresql://postgres@127.0.0.1:5432)")
    up.add_argument("--redis", default=None, metavar="URL",
                    help="Redis, the Celery broker (default: redis://127.0.0.1:6379/0)")
    up.add_argument("--airflow-database", default="apportion_airflow", metavar="NAME",
                    help="Airflow metadata database (created if absent)")
    up.add_argument("--mlflow-database", default="apportion_mlflow", metavar="NAME",
                    help="MLflow backend database (created if absent)")
    up.add_argument("--artifacts", metavar="URI",
                    help="MLflow's shared artifact destination (default: STATE_DIR/mlartifacts)")
    up.add_argument("--api-port", type=_port, default=8080, metavar="PORT", help="Airflow API server and UI port")
    up.add_argument("--mlflow-port", type=_port, default=5000, metavar="PORT", help="MLflow server port")
    for action in (up, actions.add_parser("down", help="stop every process of the cluster and check none is left"),
                   actions.add_parser("status", help="each component's state and where the UIs are")):
        action.add_argument("--state-dir", default=".cluster", metavar="DIR",
                            help="pids, URLs, logs, Airflow home, secrets and cluster.env go here")
    cluster.set_defaults(run=_cluster)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1-65535), got {text!r}")
    return int(text)


def _cluster(args: argparse.Namespace) -> int:
    """Run ``cluster up``, ``down`` or ``status``; a missing service or a bad setting is one
    error line (exit 2), a component that fails to start one line naming its log (exit 1)."""
    import sys

    from apportion.core.errors import SpecError

    with _needs_extra("cluster", "cluster"):
        import psycopg2  # noqa: F401  (the cluster extra: checked here, used by apportion.stack.cluster)
        import redis  # noqa: F401

        from apportion.stack import cluster
    try:
        return {"up": _cluster_up, "down": _cluster_down, "status": _cluster_status}[args.action](args, cluster)
    except cluster.ClusterError as error:
        raise SpecError(error.field, error.reason) from None
    except cluster.DemoError as error:
        print(f"apportion: error: cluster: {_first_line(error)}", file=sys.stderr)
        return 1


def _cluster_up(args: argparse.Namespace, cluster) -> int:
    from apportion.stack.processes import free_port

    config = cluster.ClusterConfig(
        state_dir=Path(args.state_dir).resolve(), postgres_url=args.postgres or cluster.POSTGRES_URL,
        redis_url=args.redis or cluster.REDIS_URL, airflow_database=args.airflow_database,
        mlflow_database=args.mlflow_database, worker_queues=cluster.worker_queues(args.workers, args.queues),
        node_workers=cluster.node_workers_from_spec(args.node_workers) if args.node_workers else (),
        concurrency=args.concurrency, artifacts_destination=args.artifacts,
        api_port=free_port(args.api_port), mlflow_port=free_port(args.mlflow_port))
    if config.api_port == config.mlflow_port:
        raise cluster.ClusterError("mlflow-port", f"same port as the API server: {config.api_port}")
    cluster.start_cluster(config, say=lambda line: print(f"[cluster] {line}", flush=True))
    _print_cluster(cluster.read_state(config.state_dir))
    print(f"stop it with: apportion cluster down --state-dir {args.state_dir}")
    return 0


def _cluster_down(args: argparse.Namespace, cluster) -> int:
    import sys

    state_dir = Path(args.state_dir).resolve()
    cluster.read_state(state_dir)
    before = len(cluster.cluster_processes(state_dir))
    left = cluster.stop_cluster(state_dir)
    left += [proc for proc in cluster.cluster_processes(state_dir) if proc not in left]
    if left:
        print(f"apportion: error: cluster: still running after SIGKILL: {', '.join(str(p.pid) for p in left)}",
              file=sys.stderr)
        return 1
    print(f"[cluster] stopped {before} processes; none is left")
    return 0


def _cluster_status(args: argparse.Namespace, cluster) -> int:
    state = cluster.read_state(Path(args.state_dir))
    states = _print_cluster(state)
    return 0 if all(value in ("running", "healthy") for value in states) else 1


def _print_cluster(state: dict) -> list[str]:
    """One line per component with its state; the UIs and the login; the component states."""
    from apportion.stack import cluster

    queues = {worker["name"]: worker for worker in state["workers"]}
    states = []
    for entry in state["processes"]:
        value = cluster.component_status(entry)
        states.append(value)
        worker = queues.get(entry["name"])
        where = entry.get("url") or ""
        if worker:
            where = f"queues {','.join(worker['queues'])}, hostname {worker['hostname']}"
            if worker.get("node"):
                where += f", node {worker['node']}, concurrency {worker['concurrency']}"
        print(f"  {entry['name']:<14} {value:<9} pid {entry['pid']:<8} {where}")
    password = cluster.admin_password(Path(state["airflow_home"]))
    print(f"Airflow  {state['api_url']}   login: admin / {password or '(not generated yet)'}")
    print(f"MLflow   {state['mlflow_url']}   (backend: PostgreSQL database {state['config']['mlflow_database']})")
    return states


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def register_import_dag(subparsers) -> None:
    """``apportion import-dag``: an Airflow DAG's tasks and history as workload and cluster specs."""
    imp = subparsers.add_parser(
        "import-dag", help="write a workload and cluster spec from an Airflow DAG and its past runs "
                           "(docs/import-dag.md)")
    imp.add_argument("dag_id", metavar="DAG_ID", help="a DAG in Airflow's metadata database (AIRFLOW_HOME's)")
    imp.add_argument("--out", metavar="DIR", help="folder for workload.yaml and cluster.yaml (default: DAG_ID)")
    imp.add_argument("--last-runs", type=_positive_int, default=20, metavar="N",
                     help="estimate work from the DAG's last N runs")
    imp.add_argument("--reference-speed", type=_positive_float, default=1.0, metavar="GFLOPS",
                     help="GFLOP/s of the workers that ran the DAG: work = median seconds x this")
    imp.set_defaults(run=_import_dag)


def _positive_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _import_dag(args: argparse.Namespace) -> int:
    from apportion.core.io import count_noun
    from apportion.core.outputs import OutputSet

    with _needs_extra("import-dag"):
        from apportion.stack.import_dag import import_dag, write_specs

    outputs = OutputSet(args.out or args.dag_id, ["apportion", *args.argv])
    with outputs:
        imported = import_dag(args.dag_id, reference_speed=args.reference_speed, last_runs=args.last_runs)
        names = write_specs(imported, outputs)
        outputs.commit()
    workload, cluster = imported.workload, imported.cluster
    slots = sum(n.slots for n in cluster.nodes)
    print(f"{args.dag_id}: {len(workload.tasks)} tasks, {len(workload.edges)} edges from {imported.instances} "
          f"successful task instances in {len(imported.runs)} runs; {count_noun(len(cluster.nodes), 'node')}, "
          f"{count_noun(slots, 'slot')} ({imported.executor}Executor) -> "
          + ", ".join(str(outputs.target(name)) for name in names))
    print(f"work: median seconds x {args.reference_speed:g} GFLOP/s"
          + (f"; no history, given the median: {', '.join(imported.estimated)}" if imported.estimated else ""))
    return 0
