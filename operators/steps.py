"""The steps of an allocation workflow as plain functions, so DAG files stay thin.

build workload -> snapshot cluster -> allocate -> evaluate chosen plan -> simulate -> publish
-> record, and the failure drill's re-plan. Each step writes into its task's run folder (``<output root>/<dag_id>/<run_id>/<task_id>``)
and returns a small JSON-able dict for XCom. ``allocate`` writes every result to the folder
before it talks to MLflow, so an unreachable server loses nothing: the retry finds the
complete result (same inputs and settings) and only uploads it.

A scheduled workflow starts from its previous run: ``publish_plan`` publishes the chosen plan
(plan.json) and the whole front (front.json), and the next ``allocate`` maps that front onto
its fresh workload and cluster, seeds the search with it and counts the tasks it moved.

Heavy modules (numpy, core, mlflow, matplotlib) are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from apportion.operators.tracking import (
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
RESULT_VERSION = 2
FRONT_FILE = "front.json"  # the front's plans, published beside plan.json for the next run
FRONT_VERSION = 1
# Chosen-plan metrics compared with the previous run's (``delta/<name>``, new minus old).
DELTA_METRICS = ("makespan", "utilization", "imbalance", "mean_response", "p95_response", "deadline_misses",
                 "energy", "cost")
# Realised metrics the simulate step logs (``realised/<name>_<statistic>``).
REALISED_METRICS = ("makespan", "mean_response", "p95_response", "utilization", "imbalance", "completion_rate",
                    "deadline_misses", "failed_tasks", "moved_tasks")
REALISED_STATISTICS = ("mean", "std", "p5", "p50", "p95")


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
    from apportion.core import io

    loader = io.load_workload if kind == "workload" else io.load_cluster
    if isinstance(value, (str, os.PathLike)):
        return loader(Path(value))
    if isinstance(value, Mapping):
        return loader(value)
    from apportion.core.errors import SpecError

    raise SpecError(kind, f"give a spec path, a spec dict or an upstream result, got {type(value).__name__}")


def scenario_instance(scenario: str, params: Mapping[str, Any] | None = None):
    """(Workload, Cluster) of a built-in scenario; ``params``: size, nodes, seed, logical_date."""
    from apportion.core import scenarios

    return scenarios.build(scenario, **_scenario_kwargs(params))


def _scenario_kwargs(params: Mapping[str, Any] | None) -> dict:
    from apportion.core.errors import SpecError

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
    from apportion.core.errors import SpecError

    if isinstance(value, bool):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise SpecError(field, f"must be an integer, got {value!r}") from None


def _as_bool(value, field: str) -> bool:
    """Templated flags render to ``"True"``/``"False"``; accept those, bools and 0/1."""
    from apportion.core.errors import SpecError

    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise SpecError(field, f"must be true or false, got {value!r}")


def _as_number(value, field: str, *, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    """A finite number >= ``minimum`` (rendered strings accepted); ``None``/``"None"`` when allowed."""
    import math

    from apportion.core.errors import SpecError

    if allow_none and (value is None or str(value).strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, bool):
        raise SpecError(field, f"must be a number, got {value!r}")
    try:
        x = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise SpecError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < minimum:
        raise SpecError(field, f"must be a finite number >= {minimum:g}, got {value!r}")
    return x


def _as_names(value, field: str) -> tuple[str, ...]:
    """A list of names, or a comma-separated (templated) string of them."""
    from apportion.core.errors import SpecError

    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return tuple(n.strip().strip("'\"") for n in text.split(",") if n.strip().strip("'\""))
    if isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        return tuple(value)
    raise SpecError(field, f"give a list of names, got {value!r}")


def resolve_inputs(workload=None, cluster=None, *, scenario: str | None = None,
                   scenario_params: Mapping[str, Any] | None = None, folder: Path):
    """(Workload, Cluster) from specs, upstream results or a scenario; explicit specs win."""
    from apportion.core.errors import SpecError

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
                  objectives=None, select="knee", robust_scenarios=0, noise_sigma=0.3):
    """``core.api.Settings`` from operator arguments, which may arrive as rendered strings."""
    from apportion.core.api import DEFAULT_OBJECTIVES, Settings

    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.split(",") if o.strip()]
    return Settings(
        algorithm=str(algorithm), population=_as_int(population, "population"),
        generations=_as_int(generations, "generations"), seed=_as_int(seed, "seed"),
        objectives=tuple(objectives) if objectives else DEFAULT_OBJECTIVES, select=str(select),
        robust_scenarios=_as_int(robust_scenarios, "robust_scenarios"),
        noise_sigma=_as_number(noise_sigma, "noise_sigma"),
    )


def cluster_summary(cluster) -> dict[str, int]:
    """Node counts by kind, e.g. ``{"nodes": 12, "nodes_gpu": 4, "nodes_cpu": 8}``, and
    ``nodes_failed`` when nodes are down."""
    counts: dict[str, int] = {"nodes": len(cluster.nodes)}
    for node in cluster.nodes:
        counts[f"nodes_{node.kind}"] = counts.get(f"nodes_{node.kind}", 0) + 1
    failed = sum(node.failed for node in cluster.nodes)
    if failed:
        counts["nodes_failed"] = failed
    return counts


# --- Steps -------------------------------------------------------------------------------------


def build_workload(scenario: str, *, size: int | None = None, nodes: int | None = None, seed: int = 0,
                   logical_date: str | None = None, out_dir: str | Path | None = None,
                   context: Mapping[str, Any] | None = None) -> dict:
    """Build a scenario's workload and write it as ``workload.json``.

    ``out_dir`` defaults to the current task's run folder. Returns ``{"workload": path,
    "scenario", "tasks", "requests", "edges"}``.
    """
    from apportion.core.io import workload_to_dict

    folder = Path(out_dir) if out_dir else task_folder(context)
    folder.mkdir(parents=True, exist_ok=True)
    params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
    workload, _ = scenario_instance(scenario, params)
    path = _write_json(folder / "workload.json", workload_to_dict(workload))
    return {"workload": str(path), "scenario": scenario, "tasks": len(workload.tasks),
            "requests": len(workload.requests), "edges": len(workload.edges)}


def snapshot_cluster(cluster=None, *, scenario: str | None = None, nodes: int | None = None, seed: int = 0,
                     size: int | None = None, logical_date: str | None = None, nodes_down: Sequence[str] = (),
                     out_dir: str | Path | None = None, context: Mapping[str, Any] | None = None) -> dict:
    """Freeze the cluster this run allocates on as ``cluster.json``: a spec path or dict if
    given, else the scenario's cluster; the nodes named in ``nodes_down`` are marked failed
    (they take no work). Returns ``{"cluster": path, "nodes", "nodes_<kind>"..., "nodes_down"}``."""
    from dataclasses import replace

    from apportion.core.errors import SpecError
    from apportion.core.io import cluster_to_dict

    folder = Path(out_dir) if out_dir else task_folder(context)
    folder.mkdir(parents=True, exist_ok=True)
    cluster = _unwrap(cluster, "cluster")
    if cluster is not None:
        snapshot = _load("cluster", cluster)
    elif scenario:
        params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
        snapshot = scenario_instance(scenario, params)[1]
    else:
        raise SpecError("cluster", "give a cluster spec or a scenario name")
    down = _as_names(nodes_down, "nodes_down")
    known = {node.id for node in snapshot.nodes}
    unknown = [name for name in down if name not in known]
    if unknown:
        raise SpecError("nodes_down", f"unknown nodes {unknown}; the cluster has {sorted(known)}")
    if down:
        snapshot = replace(snapshot, nodes=tuple(replace(n, failed=True) if n.id in down else n for n in snapshot.nodes))
    path = _write_json(folder / "cluster.json", cluster_to_dict(snapshot))
    return {"cluster": str(path), **cluster_summary(snapshot), "nodes_down": sorted(set(down))}


def plan_id(plan: Mapping[str, Any]) -> str:
    """12 hex digits identifying a plan's placement and order (same plan, same id)."""
    key = json.dumps({"order": plan["order"], "nodes": [[t["task"], t["node"]] for t in plan["tasks"]]})
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _fingerprint(settings, workload_spec: dict, cluster_spec: dict, warm_start_from: str | None = None) -> str:
    from dataclasses import asdict

    blob = json.dumps({"settings": asdict(settings), "workload": workload_spec, "cluster": cluster_spec,
                       "warm_start_from": warm_start_from, "version": RESULT_VERSION}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


# --- Warm start from the previous run ----------------------------------------------------------


def front_record(result, chosen_plan_id: str) -> dict:
    """front.json: every plan of the front by task and node ids (``tasks``/``nodes`` list the
    ids once; a plan's ``assignment`` gives a node index per task, its ``order`` task indices),
    its objective values, which one was chosen and the chosen plan's metrics."""
    from apportion.core.evaluate import STAT_INDEX
    from apportion.core.pareto import OBJECTIVES

    inst = result.instance
    return {
        "version": FRONT_VERSION,
        "plan_id": chosen_plan_id,
        "objectives": list(result.settings.objectives),
        "chosen": result.chosen_index,
        "metrics": result.metrics,
        "tasks": list(inst.task_ids),
        "nodes": list(inst.node_ids),
        "plans": [
            {"assignment": plan.assignment.tolist(), "order": plan.order.tolist(),
             "objectives": {name: float(stats[STAT_INDEX[OBJECTIVES[name][0]]]) for name in result.settings.objectives}}
            for plan, stats in zip(result.front, result.front_stats)
        ],
    }


def published_front_path(dag_id: str, output_root: str | Path | None = None) -> Path:
    """Where ``publish_plan`` puts the front of the plan it publishes: beside plan.json."""
    return published_plan_path(dag_id, output_root).with_name(FRONT_FILE)


def previous_front(dag_id: str, output_root: str | Path | None = None) -> dict | None:
    """The front the last run of ``dag_id`` published (front.json with its ``source``), or
    ``None`` when there is none or it cannot be read (the run then starts cold)."""
    import logging

    path = published_front_path(dag_id, output_root)
    if not path.exists():
        return None
    try:
        front = json.loads(path.read_text())
    except ValueError as exc:
        logging.getLogger(__name__).warning("ignoring unreadable %s: %s", path, exc)
        return None
    if front.get("version") != FRONT_VERSION or not front.get("plans"):
        logging.getLogger(__name__).warning("ignoring %s: version %r or no plans", path, front.get("version"))
        return None
    return front


@dataclass(frozen=True)
class _PlanIds:
    """The task and node ids a carried plan refers to: what ``core.replan.carry_over`` reads
    from the instance the plan was made for."""

    task_ids: tuple[str, ...]
    node_ids: tuple[str, ...]


def carry_front(front: Mapping[str, Any], instance, fallback) -> list:
    """The plans of ``front`` (front.json) as plans for ``instance``, by task and node id:
    a task keeps its node when the node still exists and is eligible (not failed); new tasks
    and the rest take ``fallback``'s node (``core.replan.carry_over``)."""
    import numpy as np

    from apportion.core.evaluate import Plan
    from apportion.core.replan import carry_over

    node_index = {n: j for j, n in enumerate(instance.node_ids)}
    present = set(instance.task_ids)
    tasks, nodes = front["tasks"], front["nodes"]
    plans = []
    for entry in front["plans"]:
        kept = [t for t, j in enumerate(entry["assignment"]) if tasks[t] in present and nodes[j] in node_index]
        position = {t: k for k, t in enumerate(kept)}
        old = _PlanIds(tuple(tasks[t] for t in kept), instance.node_ids)
        plan = Plan(np.array([node_index[nodes[entry["assignment"][t]]] for t in kept], dtype=np.int32),
                    np.array([position[t] for t in entry["order"] if t in position], dtype=np.int32))
        plans.append(carry_over(plan, old, instance, fallback))
    return plans


def with_previous_nodes(workload, cluster, front: Mapping[str, Any]):
    """``workload`` with each task's ``previous_node`` set to the node the previous chosen
    plan gave it, when that node is still in ``cluster`` and up (the ``moved`` statistic and
    the ``migrations`` objective count moves from it; a task off a failed node must move)."""
    from dataclasses import replace

    up = {node.id for node in cluster.nodes if not node.failed}
    chosen = front["plans"][front["chosen"]]
    previous = {front["tasks"][t]: front["nodes"][j] for t, j in enumerate(chosen["assignment"])}
    tasks = tuple(replace(task, previous_node=previous[task.id] if previous.get(task.id) in up else None)
                  for task in workload.tasks)
    return replace(workload, tasks=tasks)


def _warm_start_record(front: Mapping[str, Any] | None, instance, result, carried: list) -> tuple[dict, dict]:
    """(params, metrics) saying where the search started and what changed since the last run."""
    import numpy as np

    from apportion.core.evaluate import STAT_INDEX, Evaluator
    from apportion.core.pareto import OBJECTIVES

    if front is None:
        return {"warm_start": "false"}, {}
    source = front.get("source", {})
    params = {"warm_start": "true", "warm_start_source": source.get("mlflow_run_id") or "",
              "warm_start_source_plan": front.get("plan_id", "")}
    moved = result.chosen.stat("moved")
    movable = int(np.count_nonzero(instance.previous_node >= 0))
    metrics = {"warm_start_plans": float(len(carried)), "moved_tasks": moved,
               "moved_share": moved / movable if movable else 0.0}
    old = front.get("metrics", {})
    for name in DELTA_METRICS:
        if name in old and name in result.metrics:
            metrics[f"delta/{name}"] = float(result.metrics[name]) - float(old[name])
    # What the previous chosen plan, carried over, is worth on this run's workload and cluster.
    stats = Evaluator(instance).schedule(carried[front["chosen"]]).stats
    for name in result.settings.objectives:
        metrics[f"warm_start/previous_plan_{name}"] = float(stats[STAT_INDEX[OBJECTIVES[name][0]]])
    return params, metrics


def compute_allocation(workload, cluster, settings, folder: str | Path, *, scenario_info: Mapping | None = None,
                       started: float | None = None, previous: Mapping[str, Any] | None = None) -> dict:
    """Optimise and write plan.json, front.json, pareto.csv, schedule.csv, charts, the specs
    and, last, result.json into ``folder``; if result.json there already matches these inputs
    and settings, reuse it. ``previous`` (a published front.json) warm-starts the search and
    sets each task's previous node. Returns the result record (with ``"reused"``)."""
    from apportion.core.algorithms.heft import HeftAllocator
    from apportion.core.api import optimize, write_outputs
    from apportion.core.io import cluster_to_dict, workload_to_dict
    from apportion.core.model import Instance
    from apportion.core.pareto import OBJECTIVES

    started = time.perf_counter() if started is None else started
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if previous is not None:
        workload = with_previous_nodes(workload, cluster, previous)
    workload_spec, cluster_spec = workload_to_dict(workload), cluster_to_dict(cluster)
    source = None if previous is None else json.dumps([previous.get("plan_id"), previous.get("source")], sort_keys=True)
    fingerprint = _fingerprint(settings, workload_spec, cluster_spec, source)
    done = _complete_result(folder, fingerprint)
    if done is not None:
        return {**done, "reused": True}

    (folder / RESULT_FILE).unlink(missing_ok=True)
    instance = Instance.build(workload, cluster)
    carried = carry_front(previous, instance, HeftAllocator().build(instance)) if previous is not None else []
    result = optimize(instance, settings, initial_plans=carried)
    paths = write_outputs(result, folder)
    _write_json(folder / "workload.json", workload_spec)
    _write_json(folder / "cluster.json", cluster_spec)
    from apportion.operators.charts import gantt_chart, pareto_charts

    pareto_charts(paths["pareto"], settings.objectives, folder / "pareto.html", folder / "pareto.png",
                  title=f"{settings.algorithm}: Pareto front")
    gantt_chart(paths["schedule"], folder / "gantt.png", title=f"{settings.algorithm}: chosen plan")

    plan = json.loads(paths["plan"].read_text())
    chosen_id = plan_id(plan)
    (folder / FRONT_FILE).write_text(json.dumps(front_record(result, chosen_id)) + "\n")
    warm_params, warm_metrics = _warm_start_record(previous, instance, result, carried)
    robust_params, robust_metrics = _robust_record(result)
    summary = result.summary()
    task_seconds = time.perf_counter() - started
    record = {
        "version": RESULT_VERSION,
        "fingerprint": fingerprint,
        "plan_id": chosen_id,
        "summary": summary,
        "objectives": {name: result.chosen.stat(OBJECTIVES[name][0]) for name in settings.objectives},
        "metrics": {
            **result.metrics,
            **warm_metrics,
            **robust_metrics,
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
            **warm_params,
            **robust_params,
            **{f"scenario_{k}" if k != "scenario" else k: v for k, v in (scenario_info or {}).items() if v is not None},
        },
        "history": result.history,
    }
    _write_json(folder / RESULT_FILE, record)
    return {**record, "reused": False}


def _robust_record(result) -> tuple[dict, dict]:
    """MLflow params and metrics of a robust run (none for a nominal one): its settings, and
    ``robust/<metric>`` of the chosen plan over the scenarios beside
    ``robust/nominal_choice_makespan``, what the plan a nominal run picks gives there."""
    if result.robust_metrics is None:
        return {}, {}
    s = result.settings
    params = {"robust_scenarios": s.robust_scenarios, "robust_statistic": s.robust_statistic,
              "robust_noise_sigma": s.noise_sigma}
    metrics = {f"robust/{name}": value for name, value in result.robust_metrics.items()}
    if result.nominal_choice_robust_metrics is not None:
        params["robust_validation"] = s.robust_validation
        metrics["robust/nominal_choice_makespan"] = result.nominal_choice_robust_metrics["makespan"]
    return params, metrics


def _complete_result(folder: Path, fingerprint: str) -> dict | None:
    path = folder / RESULT_FILE
    needed = ("plan.json", FRONT_FILE, "pareto.csv", "schedule.csv", "workload.json", "cluster.json")
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
             tracking_attempts: int = 3, warm_start: bool | str = False,
             migration_objective: bool | str = False, robust_scenarios: int | str = 0,
             noise_sigma: float | str = 0.3, context: Mapping[str, Any] | None = None,
             ref: AirflowRef | None = None) -> dict:
    """Allocate, write the run folder, log it all to MLflow and return the XCom summary.

    With ``warm_start`` the front the DAG last published (``previous_front``) seeds the
    search and sets each task's previous node; ``migration_objective`` then also minimises
    the tasks moved off it (the ``migrations`` objective). ``ref`` names the task instance
    when there is no Airflow context (tests, scripts); otherwise it comes from ``context`` or
    the current task. See ``AllocationOperator``.
    """
    started = time.perf_counter()
    ref = ref or AirflowRef.from_context(_context(context))
    folder = ref.folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    settings = make_settings(algorithm=algorithm, population=population, generations=generations, seed=seed,
                             objectives=objectives, select=select, robust_scenarios=robust_scenarios,
                             noise_sigma=noise_sigma)
    w, c = resolve_inputs(workload, cluster, scenario=scenario, scenario_params=scenario_params, folder=folder)
    info = {"scenario": scenario, **_scenario_kwargs(scenario_params)} if scenario else {}
    previous = previous_front(ref.dag_id, output_root) if _as_bool(warm_start, "warm_start") else None
    if previous is not None and _as_bool(migration_objective, "migration_objective") \
            and "migrations" not in settings.objectives:
        from dataclasses import replace

        settings = replace(settings, objectives=(*settings.objectives, "migrations"))
    record = compute_allocation(w, c, settings, folder, scenario_info=info, started=started, previous=previous)

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
        "warm_start": record["params"].get("warm_start") == "true",
        "warm_start_source": record["params"].get("warm_start_source"),
        "moved_tasks": record["metrics"].get("moved_tasks"),
        "robust_makespan": record["metrics"].get("robust/makespan"),
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
        run_id, _ = tracker.task_run(experiment_id, parent_id, ref, child_run_name)
    else:
        run_id = parent_id
        tracker.set_tags(parent_id, ref.task_tags())
    try:
        tracker.set_tags(run_id, {"apportion.plan_id": record["plan_id"], "apportion.artifact_dir": str(folder),
                                  "apportion.reused_result": str(record.get("reused", False)).lower(),
                                  "apportion.warm_start": record["params"].get("warm_start", "false"),
                                  "apportion.warm_start_source": record["params"].get("warm_start_source")})
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


# Task fields naming nodes: set by warm starts and re-planning.
def load_chosen_plan(allocation: Mapping[str, Any]):
    """(instance, plan, plan.json) of an allocation result, from its folder's plan.json and the
    workload and cluster specs it was made for."""
    import numpy as np

    from apportion.core.evaluate import Plan
    from apportion.core.io import load_cluster, load_workload
    from apportion.core.model import Instance

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
    return instance, Plan(assignment, order), plan


def evaluate_plan(allocation: Mapping[str, Any], *, tolerance: float = 1e-9, tracking_uri: str | None = None,
                  mlflow_conn_id: str | None = DEFAULT_CONN_ID, metric_prefix: str = "evaluation/") -> dict:
    """Re-evaluate the chosen plan from plan.json and the saved specs, independently of the
    optimiser, and check its claimed metrics and task times (relative ``tolerance``).

    Raises ``PlanMismatch`` naming the differing fields. Logs ``<metric_prefix>verified`` and
    ``<metric_prefix>max_relative_error`` (and the tag ``apportion.<prefix>``) to the
    allocation's MLflow run when it has one. Returns ``{"plan_id", "verified",
    "max_relative_error", "metrics", ...}``.
    """
    from apportion.core.evaluate import Evaluator
    from apportion.core.metrics import plan_metrics

    folder = Path(allocation["artifact_dir"])
    instance, chosen, plan = load_chosen_plan(allocation)
    task_index = {t: i for i, t in enumerate(instance.task_ids)}
    schedule = Evaluator(instance).schedule(chosen)  # checks eligibility and order
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
        tracker.log_metrics(run_id, {f"{metric_prefix}max_relative_error": worst,
                                     f"{metric_prefix}verified": float(verified)})
        tracker.set_tags(run_id, {f"apportion.{metric_prefix.strip('/')}": "verified" if verified else "mismatch"})
        tracker.client.log_artifact(run_id, str(folder / "evaluation.json"), allocation.get("artifact_path"))
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
    ``target``), atomically, so an ``Asset`` on that path always names a whole, verified plan;
    then its front as front.json beside it, with its ``source`` (MLflow run, plan, DAG run),
    which the next run's warm start reads.

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
    front_path = Path(allocation["plan_path"]).with_name(FRONT_FILE)
    if front_path.exists():
        # Written after plan.json: a front.json always names a plan already published.
        front = json.loads(front_path.read_text())
        front["source"] = {"mlflow_run_id": allocation.get("mlflow_run_id"), "plan_id": allocation["plan_id"],
                           "dag_run_id": AirflowRef.from_context(context).run_id if context is not None else None,
                           "artifact_dir": allocation.get("artifact_dir")}
        tmp = target.with_name(FRONT_FILE + ".tmp")
        tmp.write_text(json.dumps(front) + "\n")
        os.replace(tmp, target.with_name(FRONT_FILE))
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
        best = min(allocations, key=lambda a: (a["makespan"], a["algorithm"]))  # as comparison.csv ranks them
        tags.update({"apportion.best_algorithm": best["algorithm"], "apportion.best_plan_id": best["plan_id"]})
    if evaluation is not None:
        tags["apportion.verified"] = str(bool(evaluation.get("verified"))).lower()
    if publication is not None:
        tags["apportion.published_uri"] = publication["uri"]
    tracker.set_tags(run_id, tags)
    tracker.finish(run_id, status)
    return {"mlflow_run_id": run_id, "status": status}


# --- Simulation: predicted versus realised ----------------------------------------------------


def simulate_plan(allocation: Mapping[str, Any], *, noise_sigma: float | str = 0.2, mtbf: float | str | None = None,
                  repair_mean: float | str = 60.0, samples: int | str = 500, seed: int | str = 0,
                  tracking_uri: str | None = None, mlflow_conn_id: str | None = DEFAULT_CONN_ID,
                  output_root: str | Path | None = None, context: Mapping[str, Any] | None = None,
                  ref: AirflowRef | None = None) -> dict:
    """Enact the chosen plan ``samples`` times (``core.simulate``): task durations and transfers
    vary lognormally with sigma ``noise_sigma`` (mean 1), nodes fail every ``mtbf`` seconds on
    average (``None``: never) and are repaired in ``repair_mean`` s. Same seed, same samples.

    Writes simulation.json and simulation.png (histograms of the realised makespan and p95
    response, the predicted values marked) and logs ``realised/<metric>_<mean|std|p5|p50|p95>``
    beside the predicted metrics of the allocation's MLflow run. Returns a small summary.
    """
    import math
    from dataclasses import asdict

    from apportion.core.simulate import Uncertainty, simulate

    ref = ref or AirflowRef.from_context(_context(context))
    folder = ref.folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    sigma = _as_number(noise_sigma, "noise_sigma")
    mean_up = _as_number(mtbf, "mtbf", allow_none=True)
    uncertainty = Uncertainty(duration_sigma=sigma, transfer_sigma=sigma,
                              mtbf=math.inf if mean_up is None else mean_up,
                              repair_mean=_as_number(repair_mean, "repair_mean"))
    count, key = _as_int(samples, "samples"), _as_int(seed, "seed")
    instance, plan, record = load_chosen_plan(allocation)
    started = time.perf_counter()
    result = simulate(instance, plan, uncertainty, samples=count, seed=key)
    seconds = time.perf_counter() - started

    realised = result.summary()
    predicted = record["metrics"]
    metrics = {f"realised/{name}_{stat}": realised[name][stat]
               for name in REALISED_METRICS for stat in REALISED_STATISTICS}
    if predicted.get("makespan"):
        metrics["realised/makespan_mean_over_predicted"] = realised["makespan"]["mean"] / predicted["makespan"]
    metrics["simulation_seconds"] = seconds
    from apportion.operators.charts import simulation_chart

    chart = simulation_chart({name: result[name] for name in ("makespan", "p95_response")},
                             {name: predicted.get(name) for name in ("makespan", "p95_response")},
                             folder / "simulation.png",
                             title=f"plan {allocation.get('plan_id')}: {count} samples, noise sigma {sigma:g}"
                                   + ("" if mean_up is None else f", MTBF {mean_up:g} s"))
    report = {"plan_id": allocation.get("plan_id"), "samples": count, "seed": key, "seconds": seconds,
              "uncertainty": asdict(uncertainty), "predicted": {n: predicted.get(n) for n in REALISED_METRICS},
              "realised": {n: realised[n] for n in REALISED_METRICS}}
    _write_json(folder / "simulation.json", report)

    if allocation.get("mlflow_run_id"):
        tracker = Tracker(resolve_tracking_uri(tracking_uri or allocation.get("tracking_uri"), mlflow_conn_id))
        run_id = allocation["mlflow_run_id"]
        tracker.log_params(run_id, {"simulation_noise_sigma": sigma, "simulation_mtbf": mean_up,
                                    "simulation_repair_mean": uncertainty.repair_mean, "simulation_samples": count,
                                    "simulation_seed": key})
        tracker.log_metrics(run_id, metrics)
        tracker.client.log_artifact(run_id, str(folder / "simulation.json"))
        tracker.client.log_artifact(run_id, str(chart))
    return {"plan_id": allocation.get("plan_id"), "samples": count, "seconds": seconds,
            "predicted_makespan": predicted.get("makespan"), "realised_makespan_mean": realised["makespan"]["mean"],
            "realised_makespan_p95": realised["makespan"]["p95"], "chart": str(chart), "artifact_dir": str(folder)}


# --- Failure drill: a node fails, the plan is revised ------------------------------------------


def _failure_node(instance, plan, schedule, fail_node: str, now: float, repair: float | None) -> str:
    """``fail_node``; with ``"busiest"`` the node with the most busy time in the plan whose
    failure at ``now`` leaves every unfinished task a node it may run on."""
    import numpy as np

    from apportion.core.errors import SpecError
    from apportion.core.replan import NodeFailure, residual_instance

    if fail_node != "busiest" and fail_node not in instance.node_ids:
        raise SpecError("fail_node", f"unknown node {fail_node!r}; give 'busiest' or one of {list(instance.node_ids)}")
    candidates = ([instance.node_ids[j] for j in np.argsort(-schedule.busy, kind="stable")]
                  if fail_node == "busiest" else [fail_node])
    reasons = []
    for node in candidates:
        try:
            residual_instance(instance, plan, now, [NodeFailure(node, repair)], start=schedule.start, end=schedule.end)
        except SpecError as error:
            reasons.append(f"{node}: {error}")
            continue
        return node
    raise SpecError("fail_node", f"no node can fail at {now:g} s without stranding work ({'; '.join(reasons[:3])})"
                    if fail_node == "busiest" else f"{fail_node} cannot fail at {now:g} s: {reasons[0]}")


def replan_after_failure(allocation: Mapping[str, Any], *, fail_node: str = "busiest", fail_at: float | str = 0.5,
                         repair: float | str | None = None, migration_objective: bool | str = False,
                         tracking_uri: str | None = None, mlflow_conn_id: str | None = DEFAULT_CONN_ID,
                         output_root: str | Path | None = None, context: Mapping[str, Any] | None = None,
                         ref: AirflowRef | None = None) -> dict:
    """Fail ``fail_node`` at ``fail_at`` x the chosen plan's makespan (back after ``repair`` s,
    or never; ``"busiest"``: the busiest node the remaining work can do without) and re-plan what is left with ``core.replan.replan``, seeded with the old front:
    tasks that finished or run elsewhere keep their node and times, the task running on the
    failed node is lost and planned again.

    Writes the revised plan (plan.json, schedule.csv, pareto.csv, the residual workload.json
    and cluster.json), drill.json and Gantt charts before and after (the failed node and the
    failure time marked), logs them under ``replan/`` and the metrics ``before/*``, ``after/*``,
    ``moved_tasks``, ``lost_tasks``, ``displaced_tasks``, ``finished_tasks``, ``failure_time``
    and ``replan_seconds`` to the allocation's MLflow run. Returns an allocation-like result
    (``artifact_dir``, ``plan_path``, ``workload``, ``cluster``, ...) that ``evaluate_plan`` checks.
    """
    from dataclasses import replace

    import numpy as np

    from apportion.core.api import Settings, write_outputs
    from apportion.core.errors import SpecError
    from apportion.core.evaluate import Evaluator
    from apportion.core.io import cluster_to_dict, workload_to_dict
    from apportion.core.metrics import plan_metrics
    from apportion.core.replan import NodeFailure, replan
    from apportion.operators.charts import gantt_chart

    ref = ref or AirflowRef.from_context(_context(context))
    folder = ref.folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    fraction = _as_number(fail_at, "fail_at")
    if fraction > 1.0:
        raise SpecError("fail_at", f"must be a fraction of the planned makespan in [0, 1], got {fail_at!r}")
    repair_seconds = _as_number(repair, "repair", allow_none=True)
    instance, plan, record = load_chosen_plan(allocation)
    before = Evaluator(instance).schedule(plan)
    now = fraction * before.stat("makespan")
    node = _failure_node(instance, plan, before, str(fail_node), now, repair_seconds)

    stored = dict(record["settings"])
    settings = Settings(**{**stored, "objectives": tuple(stored["objectives"])})
    if _as_bool(migration_objective, "migration_objective") and "migrations" not in settings.objectives:
        settings = replace(settings, objectives=(*settings.objectives, "migrations"))
    source = Path(allocation["artifact_dir"]) / FRONT_FILE
    old_front = carry_front(json.loads(source.read_text()), instance, plan) if source.exists() else []

    started = time.perf_counter()
    residual, result = replan(instance, plan, now, [NodeFailure(node, repair_seconds)], settings=settings,
                              previous_plans=old_front)
    replan_seconds = time.perf_counter() - started
    paths = write_outputs(result, folder)
    _write_json(folder / "workload.json", workload_to_dict(residual.workload))
    _write_json(folder / "cluster.json", cluster_to_dict(residual.cluster))

    failed = instance.node_ids.index(node)
    on_failed = plan.assignment == failed
    counts = {
        "finished_tasks": int(np.count_nonzero(before.end <= now)),
        "lost_tasks": int(np.count_nonzero(on_failed & (before.start < now) & (now < before.end))),
        "displaced_tasks": int(np.count_nonzero(on_failed & (before.end > now))),
        "moved_tasks": int(result.chosen.stat("moved")),
    }
    back_at = None if repair_seconds is None else now + repair_seconds
    marks = dict(failed_node=node, failure_time=now, back_at=back_at)
    gantt_chart(Path(allocation["artifact_dir"]) / "schedule.csv", folder / "gantt_before.png",
                title=f"before: {node} fails at {now:.4g} s", **marks)
    gantt_chart(paths["schedule"], folder / "gantt_after.png", title=f"after re-planning ({counts['moved_tasks']} moved)",
                **marks)
    after_metrics = result.metrics
    before_metrics = plan_metrics(instance, before)
    metrics = {
        **{f"before/{k}": before_metrics[k] for k in DELTA_METRICS},
        **{f"after/{k}": after_metrics[k] for k in DELTA_METRICS},
        **counts, "failure_time": now, "replan_seconds": replan_seconds,
        "replan_optimiser_seconds": result.seconds, "replan_pareto_size": result.pareto_size,
        "replan_seed_plans": float(1 + len(old_front)),
    }
    drill = {"fail_node": node, "fail_at": fraction, "failure_time": now, "repair": repair_seconds,
             "back_at": back_at, "objectives": list(settings.objectives), "metrics": metrics,
             "before_plan_id": allocation.get("plan_id")}
    _write_json(folder / "drill.json", drill)
    revised = json.loads(paths["plan"].read_text())
    out = {
        "plan_id": plan_id(revised), "fail_node": node, "failure_time": now, "makespan": after_metrics["makespan"],
        "before_makespan": before_metrics["makespan"], **counts, "replan_seconds": replan_seconds,
        "artifact_dir": str(folder), "plan_path": str(paths["plan"]), "workload": str(folder / "workload.json"),
        "cluster": str(folder / "cluster.json"), "artifact_path": "replan",
        "mlflow_run_id": allocation.get("mlflow_run_id"), "tracking_uri": allocation.get("tracking_uri"),
    }
    if allocation.get("mlflow_run_id"):
        tracker = Tracker(resolve_tracking_uri(tracking_uri or allocation.get("tracking_uri"), mlflow_conn_id))
        run_id = allocation["mlflow_run_id"]
        tracker.log_params(run_id, {"fail_node": node, "fail_at": fraction, "repair": repair_seconds,
                                    "replan_objectives": ",".join(settings.objectives)})
        tracker.log_metrics(run_id, metrics)
        tracker.set_tags(run_id, {"apportion.replan_plan_id": out["plan_id"]})
        tracker.log_artifacts(run_id, folder, "replan")
    return out
