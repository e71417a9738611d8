"""The steps of an allocation workflow as plain functions, so DAG files stay thin.

build workload -> snapshot cluster -> allocate -> evaluate chosen plan -> publish -> record.
Each step writes into its task's run folder (``<output root>/<dag_id>/<run_id>/<task_id>``)
and returns a small JSON-able dict for XCom. ``allocate`` writes every result to the folder
before it talks to MLflow, so an unreachable server loses nothing: the retry finds the
complete result (same inputs and settings) and only uploads it.

Heavy modules (numpy, core, mlflow, matplotlib) are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from operators.tracking import (
    DEFAULT_CONN_ID,
    AirflowRef,
    Tracker,
    TrackingUnavailable,
    artifact_url,
    check_reachable,
    history_steps,
    resolve_tracking_uri,
    run_url,
)

OUTPUT_ROOT_ENV = "APPORTION_OUTPUT_ROOT"
RESULT_FILE = "result.json"  # written last: its presence marks a complete allocation
RESULT_VERSION = 1


class PlanMismatch(RuntimeError):
    """The chosen plan, re-evaluated from plan.json, does not give the optimiser's numbers."""


# --- Folders -----------------------------------------------------------------------------------


def default_output_root() -> Path:
    """``$APPORTION_OUTPUT_ROOT``, else ``$AIRFLOW_HOME/apportion`` (``~/airflow/apportion``)."""
    explicit = os.environ.get(OUTPUT_ROOT_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "apportion"


def _context(context):
    if context is not None:
        return context
    from airflow.sdk import get_current_context

    return get_current_context()


def task_folder(context: Mapping[str, Any] | None = None, output_root: str | Path | None = None) -> Path:
    """The run folder of the current (or given) task instance, created if missing."""
    folder = AirflowRef.from_context(_context(context)).folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def published_plan_path(dag_id: str, output_root: str | Path | None = None) -> Path:
    """The stable path the latest verified plan of ``dag_id`` is published to."""
    return Path(output_root or default_output_root()).resolve() / "published" / dag_id / "plan.json"


def plan_asset_uri(dag_id: str, output_root: str | Path | None = None) -> str:
    """``file://`` URI of ``published_plan_path``: what the DAG's ``Asset`` points at."""
    return published_plan_path(dag_id, output_root).as_uri()


def _write_json(path: Path, data) -> Path:
    """Write atomically, so a killed task never leaves half a file that looks complete."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


# --- Inputs ------------------------------------------------------------------------------------


def _unwrap(value, key: str):
    """An upstream XCom dict ``{"workload": ..., "cluster": ...}`` -> its ``key`` entry."""
    if isinstance(value, Mapping) and key in value:
        return value[key]
    return value


def _load(kind: str, value):
    """A workload or cluster from a spec path or a spec dict."""
    from core import io

    loader = io.load_workload if kind == "workload" else io.load_cluster
    if isinstance(value, (str, os.PathLike)):
        return loader(Path(value))
    if isinstance(value, Mapping):
        return loader(value)
    from core.errors import SpecError

    raise SpecError(kind, f"give a spec path, a spec dict or an upstream result, got {type(value).__name__}")


def scenario_instance(scenario: str, params: Mapping[str, Any] | None = None):
    """(Workload, Cluster) of a built-in scenario; ``params``: size, nodes, seed, logical_date."""
    from core import scenarios

    return scenarios.build(scenario, **_scenario_kwargs(params))


def _scenario_kwargs(params: Mapping[str, Any] | None) -> dict:
    from core.errors import SpecError

    kwargs = dict(params or {})
    unknown = set(kwargs) - {"size", "nodes", "seed", "logical_date"}
    if unknown:
        raise SpecError("scenario_params", f"unknown keys {sorted(unknown)}; use size, nodes, seed, logical_date")
    for name in ("size", "nodes", "seed"):
        if kwargs.get(name) is not None:
            kwargs[name] = _as_int(kwargs[name], f"scenario_params.{name}")
        else:
            kwargs.pop(name, None)
    if not kwargs.get("logical_date"):
        kwargs.pop("logical_date", None)
    return kwargs


def _as_int(value, field: str) -> int:
    """Templated fields render to strings; accept ``"20"`` but not ``"2.5"`` or ``True``."""
    from core.errors import SpecError

    if isinstance(value, bool):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise SpecError(field, f"must be an integer, got {value!r}") from None


def resolve_inputs(workload=None, cluster=None, *, scenario: str | None = None,
                   scenario_params: Mapping[str, Any] | None = None, folder: Path):
    """(Workload, Cluster) from specs, upstream results or a scenario; explicit specs win."""
    from core.errors import SpecError

    if isinstance(workload, Mapping) and "workload" in workload and cluster is None:
        cluster = workload.get("cluster")
    workload, cluster = _unwrap(workload, "workload"), _unwrap(cluster, "cluster")
    built = scenario_instance(scenario, scenario_params) if scenario and (workload is None or cluster is None) else None
    if workload is None and built is None:
        raise SpecError("workload", "give a workload spec, an upstream result or a scenario name")
    if cluster is None and built is None:
        raise SpecError("cluster", "give a cluster spec, an upstream result or a scenario name")
    w = _load("workload", workload) if workload is not None else built[0]
    c = _load("cluster", cluster) if cluster is not None else built[1]
    return w, c


def make_settings(*, algorithm="nsga2", population=100, generations=200, seed=0,
                  objectives=None, select="knee"):
    """``core.api.Settings`` from operator arguments, which may arrive as rendered strings."""
    from core.api import DEFAULT_OBJECTIVES, Settings

    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    return Settings(
        algorithm=str(algorithm), population=_as_int(population, "population"),
        generations=_as_int(generations, "generations"), seed=_as_int(seed, "seed"),
        objectives=tuple(objectives) if objectives else DEFAULT_OBJECTIVES, select=str(select),
    )


def cluster_summary(cluster) -> dict[str, int]:
    """Node counts by kind, e.g. ``{"nodes": 12, "nodes_gpu": 4, "nodes_cpu": 8}``."""
    counts: dict[str, int] = {"nodes": len(cluster.nodes)}
    for node in cluster.nodes:
        counts[f"nodes_{node.kind}"] = counts.get(f"nodes_{node.kind}", 0) + 1
    return counts


# --- Steps -------------------------------------------------------------------------------------


def build_workload(scenario: str, *, size: int | None = None, nodes: int | None = None, seed: int = 0,
                   logical_date: str | None = None, out_dir: str | Path | None = None,
                   context: Mapping[str, Any] | None = None) -> dict:
    """Build a scenario's workload and write it as ``workload.json``.

    ``out_dir`` defaults to the current task's run folder. Returns ``{"workload": path,
    "scenario", "tasks", "requests", "edges"}``.
    """
    from core.io import workload_to_dict

    folder = Path(out_dir) if out_dir else task_folder(context)
    folder.mkdir(parents=True, exist_ok=True)
    params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
    workload, _ = scenario_instance(scenario, params)
    path = _write_json(folder / "workload.json", workload_to_dict(workload))
    return {"workload": str(path), "scenario": scenario, "tasks": len(workload.tasks),
            "requests": len(workload.requests), "edges": len(workload.edges)}


def snapshot_cluster(cluster=None, *, scenario: str | None = None, nodes: int | None = None, seed: int = 0,
                     size: int | None = None, logical_date: str | None = None,
                     out_dir: str | Path | None = None, context: Mapping[str, Any] | None = None) -> dict:
    """Freeze the cluster this run allocates on as ``cluster.json``: a spec path or dict if
    given, else the scenario's cluster. Returns ``{"cluster": path, "nodes", "nodes_<kind>"...}``."""
    from core.io import cluster_to_dict

    folder = Path(out_dir) if out_dir else task_folder(context)
    folder.mkdir(parents=True, exist_ok=True)
    cluster = _unwrap(cluster, "cluster")
    if cluster is not None:
        snapshot = _load("cluster", cluster)
    elif scenario:
        params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
        snapshot = scenario_instance(scenario, params)[1]
    else:
        from core.errors import SpecError

        raise SpecError("cluster", "give a cluster spec or a scenario name")
    path = _write_json(folder / "cluster.json", cluster_to_dict(snapshot))
    return {"cluster": str(path), **cluster_summary(snapshot)}


def plan_id(plan: Mapping[str, Any]) -> str:
    """12 hex digits identifying a plan's placement and order (same plan, same id)."""
    key = json.dumps({"order": plan["order"], "nodes": [[t["task"], t["node"]] for t in plan["tasks"]]})
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _fingerprint(settings, workload_spec: dict, cluster_spec: dict) -> str:
    from dataclasses import asdict

    blob = json.dumps({"settings": asdict(settings), "workload": workload_spec, "cluster": cluster_spec,
                       "version": RESULT_VERSION}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def compute_allocation(workload, cluster, settings, folder: str | Path, *, scenario_info: Mapping | None = None,
                       started: float | None = None) -> dict:
    """Optimise and write plan.json, pareto.csv, schedule.csv, charts, the specs and, last,
    result.json into ``folder``; if result.json there already matches these inputs and
    settings, reuse it. Returns the result record (with ``"reused"``)."""
    from core.api import optimize, write_outputs
    from core.io import cluster_to_dict, workload_to_dict
    from core.model import Instance
    from core.pareto import OBJECTIVES

    started = time.perf_counter() if started is None else started
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    workload_spec, cluster_spec = workload_to_dict(workload), cluster_to_dict(cluster)
    fingerprint = _fingerprint(settings, workload_spec, cluster_spec)
    previous = _complete_result(folder, fingerprint)
    if previous is not None:
        return {**previous, "reused": True}

    (folder / RESULT_FILE).unlink(missing_ok=True)
    instance = Instance.build(workload, cluster)
    result = optimize(instance, settings)
    paths = write_outputs(result, folder)
    _write_json(folder / "workload.json", workload_spec)
    _write_json(folder / "cluster.json", cluster_spec)
    from operators.charts import gantt_chart, pareto_charts

    pareto_charts(paths["pareto"], settings.objectives, folder / "pareto.html", folder / "pareto.png",
                  title=f"{settings.algorithm}: Pareto front")
    gantt_chart(paths["schedule"], folder / "gantt.png", title=f"{settings.algorithm}: chosen plan")

    plan = json.loads(paths["plan"].read_text())
    summary = result.summary()
    task_seconds = time.perf_counter() - started
    record = {
        "version": RESULT_VERSION,
        "fingerprint": fingerprint,
        "plan_id": plan_id(plan),
        "summary": summary,
        "objectives": {name: result.chosen.stat(OBJECTIVES[name][0]) for name in settings.objectives},
        "metrics": {
            **result.metrics,
            "hypervolume": result.hypervolume,
            "pareto_size": result.pareto_size,
            "evaluations": result.evaluations,
            "optimiser_seconds": result.seconds,
            "evaluations_per_second": result.evaluations / result.seconds if result.seconds > 0 else 0.0,
            "task_seconds": task_seconds,
            "optimiser_share": result.seconds / task_seconds if task_seconds > 0 else 0.0,
        },
        "params": {
            "algorithm": settings.algorithm, "population": settings.population,
            "generations": settings.generations, "seed": settings.seed,
            "objectives": ",".join(settings.objectives), "select": settings.select,
            "workload": workload.name, "cluster": cluster.name, "tasks": instance.n_tasks,
            "edges": instance.n_edges, "requests": len(instance.request_ids),
            **cluster_summary(cluster),
            **{f"scenario_{k}" if k != "scenario" else k: v for k, v in (scenario_info or {}).items() if v is not None},
        },
        "history": result.history,
    }
    _write_json(folder / RESULT_FILE, record)
    return {**record, "reused": False}


def _complete_result(folder: Path, fingerprint: str) -> dict | None:
    path = folder / RESULT_FILE
    needed = ("plan.json", "pareto.csv", "schedule.csv", "workload.json", "cluster.json")
    if not path.exists() or not all((folder / n).exists() for n in needed):
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if record.get("fingerprint") == fingerprint else None


def allocate(workload=None, cluster=None, *, scenario: str | None = None,
             scenario_params: Mapping[str, Any] | None = None, algorithm: str = "nsga2",
             population: int = 100, generations: int = 200, seed: int = 0,
             objectives: Sequence[str] | str | None = None, select: str = "knee",
             experiment_name: str | None = None, run_name: str | None = None, nested: bool = False,
             child_run_name: str | None = None, tracking_uri: str | None = None,
             mlflow_conn_id: str | None = DEFAULT_CONN_ID, output_root: str | Path | None = None,
             tracking_attempts: int = 3, context: Mapping[str, Any] | None = None,
             ref: AirflowRef | None = None) -> dict:
    """Allocate, write the run folder, log it all to MLflow and return the XCom summary.

    ``ref`` names the task instance when there is no Airflow context (tests, scripts);
    otherwise it comes from ``context`` or the current task. See ``AllocationOperator``.
    """
    started = time.perf_counter()
    ref = ref or AirflowRef.from_context(_context(context))
    folder = ref.folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    settings = make_settings(algorithm=algorithm, population=population, generations=generations, seed=seed,
                             objectives=objectives, select=select)
    w, c = resolve_inputs(workload, cluster, scenario=scenario, scenario_params=scenario_params, folder=folder)
    info = {"scenario": scenario, **_scenario_kwargs(scenario_params)} if scenario else {}
    record = compute_allocation(w, c, settings, folder, scenario_info=info, started=started)

    uri = resolve_tracking_uri(tracking_uri, mlflow_conn_id)
    try:
        check_reachable(uri, attempts=tracking_attempts)
        tracked = _track_allocation(record, folder, ref, uri, experiment_name=experiment_name or ref.dag_id,
                                    run_name=run_name, nested=nested,
                                    child_run_name=child_run_name or settings.algorithm)
    except TrackingUnavailable as exc:
        raise TrackingUnavailable(f"{exc}; results kept in {folder}, a retry uploads them") from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise TrackingUnavailable(
                f"MLflow tracking at {uri} failed ({exc}); results kept in {folder}, a retry uploads them"
            ) from exc
        raise
    s = record["summary"]
    return {
        "plan_id": record["plan_id"],
        "algorithm": settings.algorithm,
        "seed": settings.seed,
        "objectives": record["objectives"],
        "makespan": s["makespan"], "utilization": s["utilization"], "imbalance": s["imbalance"],
        "hypervolume": s["hypervolume"], "pareto_size": s["pareto_size"],
        "optimiser_seconds": s["seconds"],
        "reused": record["reused"],
        "artifact_dir": str(folder),
        "plan_path": str(folder / "plan.json"),
        "workload": str(folder / "workload.json"),
        "cluster": str(folder / "cluster.json"),
        **tracked,
    }


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    while exc is not None:
        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
            return True
        if "Max retries exceeded" in str(exc) or "Connection refused" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _track_allocation(record: dict, folder: Path, ref: AirflowRef, uri: str, *, experiment_name: str,
                      run_name: str | None, nested: bool, child_run_name: str) -> dict:
    """Log one allocation to the DAG run's MLflow run (or a child of it when ``nested``)."""
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id(experiment_name)
    parent_id, _ = tracker.dag_run(experiment_id, ref, run_name)
    if nested:
        run_id, resumed = tracker.task_run(experiment_id, parent_id, ref, child_run_name)
    else:
        run_id, resumed = parent_id, False
        tracker.set_tags(parent_id, ref.task_tags())
    try:
        tracker.set_tags(run_id, {"apportion.plan_id": record["plan_id"], "apportion.artifact_dir": str(folder),
                                  "apportion.reused_result": str(record.get("reused", False)).lower()})
        tracker.log_params(run_id, record["params"])
        tracker.log_metrics(run_id, record["metrics"], history_steps(record.get("history", [])))
        tracker.log_artifacts(run_id, folder)
    except Exception:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id, "FINISHED")
    return {
        "mlflow_run_id": run_id,
        "mlflow_parent_run_id": parent_id if nested else None,
        "mlflow_experiment_id": experiment_id,
        "mlflow_run_url": run_url(uri, experiment_id, run_id),
        "mlflow_plan_url": artifact_url(uri, experiment_id, run_id, "plan.json"),
        "tracking_uri": uri,
    }


def evaluate_plan(allocation: Mapping[str, Any], *, tolerance: float = 1e-9, tracking_uri: str | None = None,
                  mlflow_conn_id: str | None = DEFAULT_CONN_ID) -> dict:
    """Re-evaluate the chosen plan from plan.json and the saved specs, independently of the
    optimiser, and check its claimed metrics and task times (relative ``tolerance``).

    Raises ``PlanMismatch`` naming the differing fields. Logs ``evaluation/*`` to the
    allocation's MLflow run when it has one. Returns ``{"plan_id", "verified", "max_relative_error",
    "metrics", ...}``.
    """
    import numpy as np

    from core.evaluate import Evaluator, Plan
    from core.io import load_cluster, load_workload
    from core.metrics import plan_metrics
    from core.model import Instance

    folder = Path(allocation["artifact_dir"])
    plan = json.loads((folder / "plan.json").read_text())
    instance = Instance.build(load_workload(Path(allocation.get("workload") or folder / "workload.json")),
                              load_cluster(Path(allocation.get("cluster") or folder / "cluster.json")))
    task_index = {t: i for i, t in enumerate(instance.task_ids)}
    node_index = {n: j for j, n in enumerate(instance.node_ids)}
    assignment = np.empty(instance.n_tasks, dtype=np.int32)
    for entry in plan["tasks"]:
        assignment[task_index[entry["task"]]] = node_index[entry["node"]]
    order = np.array([task_index[t] for t in plan["order"]], dtype=np.int32)
    evaluator = Evaluator(instance)
    schedule = evaluator.schedule(Plan(assignment, order))  # checks eligibility and order
    metrics = plan_metrics(instance, schedule)

    errors: dict[str, float] = {}
    for name, claimed in plan["metrics"].items():
        errors[f"metrics.{name}"] = _relative_error(claimed, metrics.get(name))
    for entry in plan["tasks"]:
        t = task_index[entry["task"]]
        errors[f"tasks[{entry['task']}].start"] = _relative_error(entry["start"], schedule.start[t])
        errors[f"tasks[{entry['task']}].end"] = _relative_error(entry["end"], schedule.end[t])
    worst = max(errors.values(), default=0.0)
    bad = sorted(k for k, v in errors.items() if v > tolerance)
    verified = not bad
    outcome = {
        "plan_id": plan_id(plan), "verified": verified, "max_relative_error": worst,
        "checked": len(errors), "metrics": metrics, "mlflow_run_id": allocation.get("mlflow_run_id"),
    }
    _write_json(folder / "evaluation.json", outcome)
    if allocation.get("mlflow_run_id"):
        tracker = Tracker(resolve_tracking_uri(tracking_uri or allocation.get("tracking_uri"), mlflow_conn_id))
        run_id = allocation["mlflow_run_id"]
        tracker.log_metrics(run_id, {"evaluation/max_relative_error": worst, "evaluation/verified": float(verified)})
        tracker.set_tags(run_id, {"apportion.evaluation": "verified" if verified else "mismatch"})
        tracker.client.log_artifact(run_id, str(folder / "evaluation.json"))
    if not verified:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise PlanMismatch(f"plan {outcome['plan_id']} re-evaluates differently from the optimiser's claim: "
                           f"{shown} (worst relative error {worst:.3g} > {tolerance:g})")
    return outcome


def _relative_error(claimed, actual) -> float:
    if claimed is None or actual is None:
        return float("inf")
    a, b = float(claimed), float(actual)
    if a == b:  # also equal infinities
        return 0.0
    return abs(a - b) / max(1.0, abs(a))


def publish_plan(allocation: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None, *,
                 dag_id: str | None = None, target: str | Path | None = None,
                 output_root: str | Path | None = None, context: Mapping[str, Any] | None = None) -> dict:
    """Copy the chosen plan to its stable path (``published_plan_path(dag_id)`` unless
    ``target``), atomically, so an ``Asset`` on that path always names a whole, verified plan.

    Refuses a plan whose evaluation failed. Returns ``{"uri", "path", "plan_id"}``.
    """
    if evaluation is not None and not evaluation.get("verified", False):
        raise PlanMismatch(f"plan {evaluation.get('plan_id')} was not verified; not publishing it")
    if target is None:
        dag_id = dag_id or AirflowRef.from_context(_context(context)).dag_id
        target = published_plan_path(dag_id, output_root)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(allocation["plan_path"], tmp)
    os.replace(tmp, target)
    return {"uri": target.resolve().as_uri(), "path": str(target), "plan_id": allocation["plan_id"]}


def record_run(allocation: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
               evaluation: Mapping[str, Any] | None = None, publication: Mapping[str, Any] | None = None,
               status: str = "FINISHED", tracking_uri: str | None = None,
               mlflow_conn_id: str | None = DEFAULT_CONN_ID) -> dict:
    """Final tags on the DAG run's MLflow run (plan id, verification, published URI) and its
    end status. ``allocation`` may be a list (a benchmark's mapped allocations): their common
    parent run is recorded. Returns ``{"mlflow_run_id", "status"}``."""
    allocations = [allocation] if isinstance(allocation, Mapping) else list(allocation)
    if not allocations:
        raise ValueError("record_run needs at least one allocation result")
    first = allocations[0]
    run_id = first.get("mlflow_parent_run_id") or first["mlflow_run_id"]
    tracker = Tracker(resolve_tracking_uri(tracking_uri or first.get("tracking_uri"), mlflow_conn_id))
    tags = {"apportion.status": status.lower()}
    if len(allocations) == 1:
        tags["apportion.plan_id"] = first["plan_id"]
    else:
        best = min(allocations, key=lambda a: a["makespan"])
        tags.update({"apportion.best_algorithm": best["algorithm"], "apportion.best_plan_id": best["plan_id"]})
    if evaluation is not None:
        tags["apportion.verified"] = str(bool(evaluation.get("verified"))).lower()
    if publication is not None:
        tags["apportion.published_uri"] = publication["uri"]
    tracker.set_tags(run_id, tags)
    tracker.finish(run_id, status)
    return {"mlflow_run_id": run_id, "status": status}
